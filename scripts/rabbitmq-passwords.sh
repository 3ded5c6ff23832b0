#!/usr/bin/env bash
# Sets the passwords of the users that config/rabbitmq/definitions.json creates (with no usable
# password) from the environment, so no secret ever lives in the repository:
#   RABBITMQ_PASSWORD_HUB, RABBITMQ_PASSWORD_WYP_CUSTODY, RABBITMQ_PASSWORD_LEEDS_MAGISTRATES_LD, …
# (user name upper-cased, '-' → '_'). Users without a variable are left unable to log in.
set -euo pipefail
rabbitmqctl list_users -q --no-table-headers | awk '{print $1}' | while read -r user; do
  [ "$user" = "guest" ] && continue
  var="RABBITMQ_PASSWORD_$(echo "$user" | tr 'a-z-' 'A-Z_')"
  if [ -n "${!var:-}" ]; then
    rabbitmqctl change_password "$user" "${!var}" >/dev/null
    echo "password set for $user"
  else
    echo "no $var: $user cannot log in" >&2
  fi
done
