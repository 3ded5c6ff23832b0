#!/usr/bin/env bash
# docker-compose entrypoint for RabbitMQ: start the broker, wait for it, then set the users'
# passwords from the environment (scripts/rabbitmq-passwords.sh); no password is in the repo.
set -euo pipefail
docker-entrypoint.sh rabbitmq-server &
rabbitmqctl wait --timeout 120 "/var/lib/rabbitmq/mnesia/rabbit@$(hostname).pid" \
  || rabbitmqctl await_startup --timeout 120
bash /opt/hub/rabbitmq-passwords.sh
wait
