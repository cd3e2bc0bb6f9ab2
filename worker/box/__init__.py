"""Talking to Box: the API client, access tokens, Box's data shapes, the retry policy and the shared rate limit."""
