"""carebridge benchmark: throughput against raw Kafka, journey latency, memory (``make bench``)."""
