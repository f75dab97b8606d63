"""Cases: the store managers' cases end to end: how a case moves, the second round that opens it,
the boards, follow-ups, digests and escalations.
"""
