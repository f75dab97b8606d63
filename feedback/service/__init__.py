"""The feedback service: provider webhooks, rating links and unsubscribes, into the inbox."""
