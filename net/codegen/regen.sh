#!/usr/bin/env bash
# Regenerates net/codec/src/generated/ from Kafka's message JSON schemas.
#
# The schemas ship inside the kafka-clients jar on Maven Central. They are
# extracted into a scratch directory and never committed; only the generated
# Rust is. Needs Java's mvn, unzip and cargo. Usage: net/codegen/regen.sh
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
scratch="${SCHEMA_DIR:-${TMPDIR:-/tmp}/sluice-kafka-schemas-$KAFKA_VERSION}"

mvn -q dependency:get -Dartifact="org.apache.kafka:kafka-clients:$KAFKA_VERSION"
jar="${M2_REPO:-$HOME/.m2/repository}/org/apache/kafka/kafka-clients/$KAFKA_VERSION/kafka-clients-$KAFKA_VERSION.jar"

rm -rf "$scratch"
mkdir -p "$scratch"
unzip -q -o "$jar" 'common/message/*.json' -d "$scratch"

cd "$repo"
cargo run --quiet -p codegen -- "$scratch/common/message" net/codec/src/generated
cargo fmt -p sluice-codec
