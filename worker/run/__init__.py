"""Running a job: resolution, the safety policy, group checks, the directory copy, and the runner that sends."""
