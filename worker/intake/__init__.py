"""The HTTP intake: authenticates senders and turns their alert payloads into boxcut jobs."""
