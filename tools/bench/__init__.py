"""`unbind bench`: end-to-end unbind throughput and latency of a running stack, beside the raw
Kafka and database ceilings of the same machine, measured in the same run."""
