#!/bin/bash
# The apache/kafka image's healthcheck tool, from the kafka-tools jar.
exec java -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
  -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.xml \
  -cp '/opt/kafka/libs/*' org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
