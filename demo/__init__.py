"""The demo's synthetic world: the population and its history, the customers who reply, the store
managers who work their boards.
"""
