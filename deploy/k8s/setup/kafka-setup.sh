#!/bin/bash
# Prepares a Kafka cluster for unbind, as its admin (a super user), over SASL_SSL: the topic and its
# dead-letter topic, one SCRAM-SHA-512 user per service, and the services' ACLs. Idempotent: run it
# on every release; re-run it after changing a password (that is how one is rotated).
# Run by the Kubernetes Job unbind-kafka-setup and by the compose service kafka-setup, in the
# apache/kafka image. tests/deploy checks its ACLs against tools/kafka_access.py.
#
# Environment: KAFKA_BOOTSTRAP_SERVERS; KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD (the admin);
# KAFKA_SSL_CAFILE (the CA of the brokers' certificates); UNBIND_TOPIC, UNBIND_DLQ_TOPIC;
# PARTITIONS, REPLICATION_FACTOR, MIN_INSYNC_REPLICAS; KAFKA_PASSWORD_<SERVICE> for each service.
set -euo pipefail
bin=/opt/kafka/bin
admin=/tmp/admin.properties
umask 077
cat >"$admin" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$KAFKA_SASL_USERNAME" password="$KAFKA_SASL_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$KAFKA_SSL_CAFILE
EOF
kafka() { "$bin/$1" --bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS" --command-config "$admin" "${@:2}"; }

for topic in "$UNBIND_TOPIC" "$UNBIND_DLQ_TOPIC"; do
  kafka kafka-topics.sh --create --if-not-exists --topic "$topic" \
    --partitions "$PARTITIONS" --replication-factor "$REPLICATION_FACTOR" --config min.insync.replicas="$MIN_INSYNC_REPLICAS"
  # --if-not-exists leaves an older, smaller topic as it is; the consumers' scale-out assumes $PARTITIONS.
  count=$(kafka kafka-topics.sh --describe --topic "$topic" | grep -o 'PartitionCount: *[0-9]*' | grep -o '[0-9]*$')
  if [ "$count" -lt "$PARTITIONS" ]; then
    echo "$topic has $count partitions, fewer than $PARTITIONS: grow it with kafka-topics.sh --alter --partitions $PARTITIONS" \
      "(this moves keys to other partitions: do it with the consumers drained), or lower maxReplicas" >&2
    exit 1
  fi
  echo "$topic: $count partitions"
done

# One principal per service; upserting a user sets its password (the rotation step).
for service in binding verification risk notification dashboard; do
  password_var="KAFKA_PASSWORD_${service^^}"
  kafka kafka-configs.sh --alter --entity-type users --entity-name "$service" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=${!password_var}]" >/dev/null
  echo "user $service: SCRAM-SHA-512 credentials set"
done

# No ACL, no access (allow.everyone.if.no.acl.found=false). Adding an ACL twice is harmless.
acl() { kafka kafka-acls.sh --add --force "$@" >/dev/null; }
# The services that emit events write the topic.
acl --allow-principal User:binding --allow-principal User:verification --allow-principal User:risk --allow-principal User:notification \
  --operation Write --topic "$UNBIND_TOPIC"
# Every service with an inbox reads it, and dead-letters what it cannot handle; the dashboard reads both.
acl --allow-principal User:binding --allow-principal User:verification --allow-principal User:risk --allow-principal User:notification \
  --allow-principal User:dashboard --operation Read --topic "$UNBIND_TOPIC"
acl --allow-principal User:binding --allow-principal User:verification --allow-principal User:risk --allow-principal User:notification \
  --operation Write --topic "$UNBIND_DLQ_TOPIC"
acl --allow-principal User:dashboard --operation Read --topic "$UNBIND_DLQ_TOPIC"
# Each reads with its own consumer groups only: unbind-<service> and longer.
for service in binding verification risk notification dashboard; do
  acl --allow-principal "User:$service" --operation Read --group "unbind-$service" --resource-pattern-type prefixed
done
echo "ACLs: the services' access granted on $UNBIND_TOPIC and $UNBIND_DLQ_TOPIC"
