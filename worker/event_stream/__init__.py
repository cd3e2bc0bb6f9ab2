"""Box's enterprise event stream: Box Shield alerts in, and what terminated users did afterwards."""
