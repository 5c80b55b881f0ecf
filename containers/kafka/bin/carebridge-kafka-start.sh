#!/bin/bash
# Broker configuration from the environment, as apache/kafka's image does it: KAFKA_FOO_BAR
# becomes foo.bar (`__` -> `_`, `___` -> `-`); CLUSTER_ID names the cluster. Then format the
# storage (once) and run the broker in the foreground.
set -euo pipefail
config=/opt/kafka/config/server.properties
not_properties=" KAFKA_HEAP_OPTS KAFKA_OPTS KAFKA_JVM_PERFORMANCE_OPTS KAFKA_LOG4J_OPTS KAFKA_JMX_OPTS KAFKA_VERSION "
: > "$config"
for name in $(compgen -e | grep '^KAFKA_' || true); do
  [[ $not_properties == *" $name "* ]] && continue
  key=${name#KAFKA_}
  key=${key,,}
  key=${key//___/-}
  key=${key//__/@}
  key=${key//_/.}
  key=${key//@/_}
  printf '%s=%s\n' "$key" "${!name}" >> "$config"
done
grep -q '^log\.dirs=' "$config" || echo "log.dirs=/var/lib/kafka/data" >> "$config"

java_cmd=(java -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.xml -cp '/opt/kafka/libs/*')
"${java_cmd[@]}" -Xmx256m kafka.tools.StorageTool format --ignore-formatted \
  -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$config"
# shellcheck disable=SC2086  # the *_OPTS variables hold several JVM options
exec "${java_cmd[@]}" ${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m} -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true ${KAFKA_OPTS:-} kafka.Kafka "$config"
