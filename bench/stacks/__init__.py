"""The serving stacks a user might pick instead of this service, each serving the same model directory
with its own idiomatic dynamic batching. ``bench.compare`` builds one virtual environment per stack,
starts each server from these modules and loads them all with the same bodies and the same wrk."""
