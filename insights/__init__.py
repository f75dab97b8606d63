"""Insights: the monthly KPI report, the loop report and store lists, and the analyses (drill-down,
drivers, topics, lift).
"""
