# testbed/kafka/secure.sh - the Kafka half of `scripts/testbed up --secure`, sourced by
# scripts/testbed (which defines log, die, since, shell_quote, kafka_port, BROKERS, RUN, JAVA).
#
# Every broker gets two more listeners, both SASL_SSL on 127.0.0.1 with the same certificate:
#   SASL_SSL  port FLUMEN_KAFKA_SECURE_PORT_BASE + N - 1, SCRAM-SHA-512, advertised as 127.0.0.1;
#   KERBEROS  port FLUMEN_KAFKA_GSSAPI_PORT_BASE + N - 1, GSSAPI against the testbed's KDC
#             (service principal kafka/localhost, keytab kerberos/kafka.keytab), advertised as
#             localhost.
# Why two: a Kerberos client names the service after the host it dials (librdkafka passes the
# broker's advertised host to Cyrus SASL: kafka/<host>), and a service principal is named by a
# host name, as in production. The SCRAM listener advertises 127.0.0.1, which its tests and
# probes rely on; one listener can advertise only one host. Kafka would take both mechanisms on
# one listener (sasl.enabled.mechanisms is a list), so the split is about the advertised name.
# The PLAINTEXT listener, inter-broker traffic and the controller stay as they are, so the
# existing tests and the topic helpers keep working.
#
# Files under $RUN/kafka-tls (the folder is 0700, the secrets 0600):
#   ca.p12 / ca.pem                 the testbed CA (keytool), its certificate as PEM for librdkafka
#   broker.p12                      the brokers' key and certificate, SAN ip:127.0.0.1 and
#                                   dns:localhost, signed by that CA (PKCS12)
#   untrusted-ca.pem                an unrelated CA, for tests that expect the handshake to fail
#   scram.pass                      the SCRAM password of user $KAFKA_SCRAM_USER
#   store.pass                      the keystores' password (also in server.properties)

KAFKA_TLS=$RUN/kafka-tls
KAFKA_SCRAM_USER=flumen
KAFKA_TLS_VALIDITY_DAYS=3650
KAFKA_TLS_SAN=ip:127.0.0.1,dns:localhost

secure_port() { echo $((KAFKA_SECURE_PORT_BASE + $1 - 1)); }
gssapi_port() { echo $((KAFKA_GSSAPI_PORT_BASE + $1 - 1)); }
KAFKA_KERBEROS_SERVICE=kafka
KAFKA_KERBEROS_HOST=localhost # the advertised host of the KERBEROS listener, in its principal
secure_bootstrap() {
  local n out=()
  for ((n = 1; n <= BROKERS; n++)); do out+=("127.0.0.1:$(secure_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}
gssapi_bootstrap() {
  local n out=()
  for ((n = 1; n <= BROKERS; n++)); do out+=("$KAFKA_KERBEROS_HOST:$(gssapi_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# random_secret FILE: 24 random URL-safe characters into FILE (0600); never echoed.
random_secret() {
  (umask 077 && head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$1")
}

# keytool_quiet ARGS...: keytool with its output in the TLS log, failing loudly.
keytool_quiet() {
  if ! keytool "$@" >>"$LOGS/kafka-tls.log" 2>&1 </dev/null 9>&-; then
    show_log_tail "$LOGS/kafka-tls.log" 20
    die "keytool $1 failed (log: $LOGS/kafka-tls.log)"
  fi
}

# make_ca NAME: a self-signed CA key pair in NAME.p12 and its certificate in NAME.pem.
make_ca() {
  local name=$1 pass
  pass=$(<"$KAFKA_TLS/store.pass")
  keytool_quiet -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity "$KAFKA_TLS_VALIDITY_DAYS" \
    -dname "CN=flumen testbed $name" -ext bc:c -keystore "$KAFKA_TLS/$name.p12" \
    -storetype PKCS12 -storepass "$pass"
  keytool_quiet -exportcert -rfc -alias ca -keystore "$KAFKA_TLS/$name.p12" -storepass "$pass" \
    -file "$KAFKA_TLS/$name.pem"
}

# make_broker_keystore: broker.p12 holding a key whose certificate the testbed CA signed, with
# the CA in its chain. The SAN covers how clients reach the listener, so librdkafka's default
# hostname verification (ssl.endpoint.identification.algorithm=https) passes.
make_broker_keystore() {
  local pass ks=$KAFKA_TLS/broker.p12
  pass=$(<"$KAFKA_TLS/store.pass")
  keytool_quiet -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity "$KAFKA_TLS_VALIDITY_DAYS" \
    -dname "CN=localhost" -ext "SAN=$KAFKA_TLS_SAN" -keystore "$ks" -storetype PKCS12 -storepass "$pass"
  keytool_quiet -certreq -alias broker -keystore "$ks" -storepass "$pass" -file "$KAFKA_TLS/broker.csr"
  keytool_quiet -gencert -alias ca -keystore "$KAFKA_TLS/ca.p12" -storepass "$pass" -rfc \
    -infile "$KAFKA_TLS/broker.csr" -outfile "$KAFKA_TLS/broker.crt" -validity "$KAFKA_TLS_VALIDITY_DAYS" \
    -ext "SAN=$KAFKA_TLS_SAN" -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth
  keytool_quiet -importcert -noprompt -alias ca -file "$KAFKA_TLS/ca.pem" -keystore "$ks" -storepass "$pass"
  keytool_quiet -importcert -alias broker -file "$KAFKA_TLS/broker.crt" -keystore "$ks" -storepass "$pass"
}

# secure_kafka_prepare: the two secrets now (formatting needs the SCRAM password), and the
# CAs and the broker keystore in the background (keytool starts a JVM per step: about 20 s on
# a busy 2-core machine, overlapped with formatting); secure_kafka_ready waits for them.
# Everything under $KAFKA_TLS is created 0600 in a 0700 folder.
secure_kafka_prepare() {
  command -v keytool >/dev/null || die "keytool not found (it comes with the JDK: openjdk-17-jdk-headless)"
  command -v openssl >/dev/null || die "openssl not found (Debian package openssl)"
  mkdir -p "$KAFKA_TLS"
  chmod 700 "$KAFKA_TLS"
  random_secret "$KAFKA_TLS/store.pass"
  random_secret "$KAFKA_TLS/scram.pass"
  KAFKA_TLS_T0=$(now)
  (
    umask 077
    make_ca untrusted-ca &
    make_ca ca
    make_broker_keystore
    wait $! || exit 1
    rm -f "$KAFKA_TLS/broker.csr" "$KAFKA_TLS/broker.crt" "$KAFKA_TLS/untrusted-ca.p12"
  ) 9>&- &
  KAFKA_TLS_PID=$!
}

secure_kafka_ready() {
  wait "$KAFKA_TLS_PID" || die "making the Kafka TLS material failed (log: $LOGS/kafka-tls.log)"
  log "Kafka TLS material in $KAFKA_TLS ($(since "$KAFKA_TLS_T0")s)"
}

# secure_format_args: extra `kafka-storage format` arguments that create the SCRAM user in the
# cluster metadata (KRaft has no other place before the first broker starts). The password is
# on that short-lived tool's command line, visible to local `ps` for a second: acceptable on a
# loopback testbed, never in our output.
secure_format_args() {
  printf '%s\n' --add-scram "SCRAM-SHA-512=[name=$KAFKA_SCRAM_USER,password=$(<"$KAFKA_TLS/scram.pass")]"
}

# secure_listener_props N: server.properties lines for broker N's SASL_SSL listeners. They are
# appended after the plain settings, so the listener lines here replace the earlier ones.
#
# The KERBEROS listener's login uses isInitiator=false: the broker only accepts GSSAPI logins
# (inter-broker traffic is PLAINTEXT), so it needs its keys from the keytab but no ticket of
# its own, and never talks to the KDC. A broker therefore starts, and restarts, while the KDC
# is down (a KDC outage only stops clients from getting tickets); with the default
# isInitiator=true the Krb5LoginModule asks the KDC for a TGT at start and the broker exits
# when it cannot reach it. The keytab must exist: cmd_up starts the KDC (which writes it)
# before the brokers. principal.to.local maps flumen@REALM to user flumen (the DEFAULT rule
# would too, for the default realm; the explicit rule says so whatever the host's krb5.conf).
secure_listener_props() {
  local n=$1 pass plain ctrl sec gss
  pass=$(<"$KAFKA_TLS/store.pass")
  plain=127.0.0.1:$(kafka_port "$n")
  ctrl=127.0.0.1:$(controller_port "$n")
  sec=127.0.0.1:$(secure_port "$n")
  gss=$(gssapi_port "$n")
  cat <<EOF

# --secure: SASL_SSL listeners beside the PLAINTEXT one: SCRAM-SHA-512, and GSSAPI (Kerberos)
listeners=PLAINTEXT://$plain,CONTROLLER://$ctrl,SASL_SSL://$sec,KERBEROS://127.0.0.1:$gss
advertised.listeners=PLAINTEXT://$plain,SASL_SSL://$sec,KERBEROS://$KAFKA_KERBEROS_HOST:$gss
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,KERBEROS:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.kerberos.sasl.enabled.mechanisms=GSSAPI
listener.name.kerberos.gssapi.sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required useKeyTab=true storeKey=true isInitiator=false keyTab="$KRB_DIR/kafka.keytab" principal="$KAFKA_KERBEROS_SERVICE/$KAFKA_KERBEROS_HOST@$KDC_REALM";
sasl.kerberos.service.name=$KAFKA_KERBEROS_SERVICE
sasl.kerberos.principal.to.local.rules=RULE:[1:\$1@\$0](.*@${KDC_REALM//./[.]})s/@.*//,DEFAULT
ssl.keystore.type=PKCS12
ssl.keystore.location=$KAFKA_TLS/broker.p12
ssl.keystore.password=$pass
ssl.key.password=$pass
ssl.client.auth=none
EOF
}

# secure_exports: the export lines of the secure listener. Names are fixed: tests rely on them.
secure_exports() {
  echo "export FLUMEN_KAFKA_SECURE_BOOTSTRAP=$(shell_quote "$(secure_bootstrap)")"
  echo "export FLUMEN_KAFKA_CA_PEM=$(shell_quote "$KAFKA_TLS/ca.pem")"
  echo "export FLUMEN_KAFKA_UNTRUSTED_CA_PEM=$(shell_quote "$KAFKA_TLS/untrusted-ca.pem")"
  echo "export FLUMEN_KAFKA_SCRAM_USER=$(shell_quote "$KAFKA_SCRAM_USER")"
  echo "export FLUMEN_KAFKA_SCRAM_PASSWORD_FILE=$(shell_quote "$KAFKA_TLS/scram.pass")"
  echo "export FLUMEN_KAFKA_GSSAPI_BOOTSTRAP=$(shell_quote "$(gssapi_bootstrap)")"
  echo "export FLUMEN_KAFKA_KERBEROS_SERVICE=$(shell_quote "$KAFKA_KERBEROS_SERVICE")"
  echo "export FLUMEN_KAFKA_CLIENT_PRINCIPAL=$(shell_quote "flumen@$KDC_REALM")"
  echo "export FLUMEN_KAFKA_CLIENT_KEYTAB=$(shell_quote "$KRB_DIR/flumen.keytab")"
}

# secure_probe N: broker N's SASL_SSL listeners complete a TLS handshake whose certificate the
# testbed CA verifies for the name clients use (127.0.0.1 for SCRAM, localhost for Kerberos).
# The SASL logins themselves are left to the clients.
secure_probe() {
  local port
  port=$(secure_port "$1")
  timeout 5 openssl s_client -connect "127.0.0.1:$port" -CAfile "$KAFKA_TLS/ca.pem" \
    -verify_ip 127.0.0.1 -verify_return_error </dev/null >/dev/null 2>&1 || return 1
  port=$(gssapi_port "$1")
  timeout 5 openssl s_client -connect "127.0.0.1:$port" -CAfile "$KAFKA_TLS/ca.pem" \
    -verify_hostname "$KAFKA_KERBEROS_HOST" -verify_return_error </dev/null >/dev/null 2>&1
}

# wait_secure_listeners: every broker's SASL_SSL listeners answer with a verified handshake
# (the broker logged "Kafka Server started", so it is up or broken, not on its way).
wait_secure_listeners() {
  local n deadline
  deadline=$((SECONDS + 30))
  for ((n = 1; n <= BROKERS; n++)); do
    until secure_probe "$n"; do
      ((SECONDS < deadline)) || die "Kafka broker $n: no verified TLS handshake on SASL_SSL 127.0.0.1:$(secure_port "$n") or KERBEROS 127.0.0.1:$(gssapi_port "$n") (log: $LOGS/kafka-$n.log)"
      sleep 0.5
    done
    log "Kafka broker $n: SASL_SSL (SCRAM-SHA-512) on 127.0.0.1:$(secure_port "$n"), SASL_SSL (GSSAPI, $KAFKA_KERBEROS_SERVICE/$KAFKA_KERBEROS_HOST) on $KAFKA_KERBEROS_HOST:$(gssapi_port "$n")"
  done
}
