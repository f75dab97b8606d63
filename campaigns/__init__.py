"""Content, channel and standard: campaign definitions, planning into the outbox, dispatch."""
