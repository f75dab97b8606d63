"""What customers say: replies parsed and scored, ingested with delivery events and attributed to
their survey.
"""
