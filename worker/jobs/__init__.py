"""Jobs and their records: the model, the Redis store, submitting, de-duplication, operator actions, offboarding."""
