"""Service: provider webhooks, rating links and unsubscribes into the inbox, and the store
managers' page.
"""
