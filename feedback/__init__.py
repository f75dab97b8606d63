"""Feedback: the inbox of replies, their scoring and attribution, second rounds and KPIs."""
