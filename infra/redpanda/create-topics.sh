#!/usr/bin/env bash
# Create the event topics declared in topics.yaml (next to this script) with rpk.
# Idempotent: a topic that already exists is left as it is apart from its configs, which are
# set again to the declared values; its partition count is never changed. Needs only bash,
# awk and rpk (no python: it also runs inside the Redpanda image). See --help.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
  cat <<EOF
Usage: $(basename "$0") [--replicas N] [--brokers HOST:PORT,...] [--file PATH] [--no-alter] [--dry-run]

Create the Plasma Engine event topics declared in topics.yaml with rpk, one
'rpk topic create NAME -p PARTITIONS -r REPLICAS -c key=value ...' per topic.

A topic that already exists is reported and left alone, except that its configs
are set again to the declared values ('rpk topic alter-config NAME --set ...');
its partition count is never changed (that would re-map keys to partitions and
break per-aggregate order), only a difference is warned about.

Options:
  --replicas N     replication factor for every topic instead of the file's
                   (the file holds production's 3; a single dev broker needs 1).
                   min.insync.replicas is lowered to N when it is larger.
  --brokers LIST   seed brokers (overrides RPK_BROKERS).
  --file PATH      the topics file [default: topics.yaml next to this script].
  --no-alter       leave the configs of existing topics alone.
  --dry-run        print the rpk commands instead of running them; does not
                   contact the cluster.
  -h, --help       show this help.

Environment:
  RPK_BROKERS      seed brokers [default: localhost:9092].
  Other connection settings (TLS, SASL) come from rpk itself: RPK_TLS_ENABLED,
  RPK_SASL_MECHANISM, RPK_USER, RPK_PASS, ... or an rpk profile.

Examples:
  RPK_BROKERS=redpanda-0:9092,redpanda-1:9092 $(basename "$0")
  $(basename "$0") --replicas 1 --brokers localhost:19092
  $(basename "$0") --dry-run
EOF
}

die() {
  echo "create-topics: $*" >&2
  exit 1
}

topics_file=$here/topics.yaml
brokers=${RPK_BROKERS:-localhost:9092}
replicas=""
alter=1
dry_run=0

while (($# > 0)); do
  case $1 in
    --replicas)
      (($# >= 2)) || die "--replicas needs a value"
      replicas=$2
      shift 2
      ;;
    --replicas=*)
      replicas=${1#*=}
      shift
      ;;
    --brokers)
      (($# >= 2)) || die "--brokers needs a value"
      brokers=$2
      shift 2
      ;;
    --brokers=*)
      brokers=${1#*=}
      shift
      ;;
    --file)
      (($# >= 2)) || die "--file needs a value"
      topics_file=$2
      shift 2
      ;;
    --file=*)
      topics_file=${1#*=}
      shift
      ;;
    --no-alter)
      alter=0
      shift
      ;;
    --dry-run)
      dry_run=1
      shift
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    *)
      die "unknown argument: $1 (see --help)"
      ;;
  esac
done

if [[ -n $replicas ]]; then
  [[ $replicas =~ ^[1-9][0-9]*$ ]] || die "--replicas must be a positive integer, not '$replicas'"
  if ((replicas % 2 == 0)); then
    echo "create-topics: warning: Redpanda requires an odd replication factor, not $replicas" >&2
  fi
fi
[[ -n $brokers ]] || die "no brokers: set RPK_BROKERS or pass --brokers"
[[ -r $topics_file ]] || die "cannot read $topics_file"

# Parse the topics file: one line per topic, tab-separated:
#   name  partitions  replication_factor  key=value  key=value ...
# It accepts the plain subset of YAML that topics.yaml uses (block mappings and a block list,
# `key: value` one a line, comments, optional quotes around scalars) and fails on anything
# else rather than guessing. POSIX awk (mawk in the Redpanda image, gawk elsewhere).
parse_topics() {
  # shellcheck disable=SC2016 # $0 and friends are awk's, not the shell's.
  awk -v q="'" '
    function fail(msg) {
      printf "%s:%d: %s\n", FILENAME, FNR, msg > "/dev/stderr"
      failed = 1
      exit 1
    }
    function trim(s) {
      sub(/^[ \t]+/, "", s)
      sub(/[ \t]+$/, "", s)
      return s
    }
    function unquote(s,   first, last) {
      if (length(s) >= 2) {
        first = substr(s, 1, 1)
        last = substr(s, length(s), 1)
        if ((first == "\"" && last == "\"") || (first == q && last == q))
          s = substr(s, 2, length(s) - 2)
      }
      return s
    }
    function flush(   out, i) {
      if (!in_item) return
      if (name == "") fail("a topic without a name")
      if (name !~ /^[A-Za-z0-9._-]+$/) fail("topic " name ": invalid name")
      if (partitions !~ /^[1-9][0-9]*$/) fail("topic " name ": partitions must be a positive integer")
      if (replication !~ /^[1-9][0-9]*$/) fail("topic " name ": replication_factor must be a positive integer")
      out = name "\t" partitions "\t" replication
      for (i = 1; i <= ncfg; i++) out = out "\t" cfg[i]
      print out
      topics++
      in_item = 0; in_cfg = 0; name = ""; partitions = ""; replication = ""; ncfg = 0
    }
    {
      line = $0
      sub(/\r$/, "", line)
      if (line ~ /^\t/) fail("tabs are not allowed for indentation")
      sub(/^[ \t]*#.*$/, "", line)   # a comment line
      sub(/[ \t]+#.*$/, "", line)    # a trailing comment
      if (line ~ /^[ \t]*$/) next
      if (line ~ /^---[ \t]*$/) next

      match(line, /^ */)
      indent = RLENGTH
      body = substr(line, indent + 1)

      if (indent == 0) {
        if (body ~ /^topics:[ \t]*$/) { in_topics = 1; next }
        fail("unexpected top-level line: " body)
      }
      if (!in_topics) fail("content before topics:")

      if (body == "-" || substr(body, 1, 2) == "- ") {
        flush()
        in_item = 1
        body = trim(substr(body, 2))
        if (body == "") next
        indent += 2
      }
      if (!in_item) fail("expected a list item (- name: ...) under topics:")

      colon = index(body, ":")
      if (colon == 0) fail("expected key: value, got: " body)
      key = trim(substr(body, 1, colon - 1))
      value = unquote(trim(substr(body, colon + 1)))

      if (in_cfg && indent > cfg_indent) {
        if (key !~ /^[A-Za-z0-9._-]+$/) fail("invalid config key: " key)
        if (value == "") fail("config " key ": empty value")
        if (value ~ /[ \t]/) fail("config " key ": whitespace in a value is not supported")
        cfg[++ncfg] = key "=" value
        next
      }
      in_cfg = 0

      if (key == "name") name = value
      else if (key == "partitions") partitions = value
      else if (key == "replication_factor") replication = value
      else if (key == "config") {
        if (value != "") fail("config must be a block mapping, one key: value a line")
        in_cfg = 1
        cfg_indent = indent
      }
      else fail("unknown topic key: " key)
    }
    END {
      if (failed) exit 1
      flush()
      if (failed) exit 1
      if (topics == 0) { printf "%s: no topics declared\n", FILENAME > "/dev/stderr"; exit 1 }
    }
  ' "$1"
}

parsed=$(parse_topics "$topics_file") || die "cannot parse $topics_file"
topic_lines=()
while IFS= read -r topic_line; do
  topic_lines+=("$topic_line")
done <<<"$parsed"

rpk_conn=(-X "brokers=$brokers")

print_cmd() {
  printf '%q ' "$@" | sed 's/ $//'
}

existing=""
if ((dry_run == 0)); then
  command -v rpk >/dev/null || die "rpk not found on PATH (https://docs.redpanda.com/current/get-started/rpk-install/)"
  # NAME PARTITIONS REPLICAS, one topic a line after the header.
  existing=$(rpk topic list "${rpk_conn[@]}") || die "cannot list the topics on $brokers"
  echo "create-topics: brokers $brokers, ${#topic_lines[@]} topics in $topics_file"
else
  echo "# dry run: ${#topic_lines[@]} topics in $topics_file, brokers $brokers"
fi

for topic_line in "${topic_lines[@]}"; do
  IFS=$'\t' read -r -a fields <<<"$topic_line"
  name=${fields[0]}
  partitions=${fields[1]}
  rf=${replicas:-${fields[2]}}
  configs=("${fields[@]:3}")

  # min.insync.replicas above the replication factor would refuse every acks=all write on a
  # Kafka-API broker: with --replicas 1 it becomes 1.
  for ((i = 0; i < ${#configs[@]}; i++)); do
    kv=${configs[$i]}
    if [[ ${kv%%=*} == min.insync.replicas && ${kv#*=} =~ ^[0-9]+$ ]] && ((${kv#*=} > rf)); then
      configs[i]="min.insync.replicas=$rf"
      echo "create-topics: $name: min.insync.replicas ${kv#*=} > replication factor $rf, using $rf" >&2
    fi
  done

  create=(rpk topic create "$name" -p "$partitions" -r "$rf")
  set_configs=(rpk topic alter-config "$name")
  # ${a[@]+"${a[@]}"}: an empty array is "unbound" under `set -u` in bash before 4.4.
  for kv in ${configs[@]+"${configs[@]}"}; do
    create+=(-c "$kv")
    set_configs+=(--set "$kv")
  done
  create+=("${rpk_conn[@]}")
  set_configs+=("${rpk_conn[@]}")

  if ((dry_run)); then
    print_cmd "${create[@]}"
    echo
    if ((alter)) && ((${#configs[@]} > 0)); then
      echo "# if $name already exists:"
      print_cmd "${set_configs[@]}"
      echo
    fi
    continue
  fi

  current=$(awk -v t="$name" 'NR > 1 && $1 == t { print $2 }' <<<"$existing")
  if [[ -z $current ]]; then
    # Not listed: create it. Another process may have created it in between, which rpk reports
    # as TOPIC_ALREADY_EXISTS.
    if output=$("${create[@]}" 2>&1); then status=0; else status=$?; fi
    if grep -q TOPIC_ALREADY_EXISTS <<<"$output"; then
      current="?"
    elif ((status != 0)) || [[ $(awk -v t="$name" '$1 == t { print $2 }' <<<"$output") != OK ]]; then
      echo "$output" >&2
      die "creating $name failed"
    else
      echo "create-topics: $name: created ($partitions partitions, replication factor $rf)"
      continue
    fi
  fi

  if [[ $current == "?" ]]; then
    echo "create-topics: $name: already exists (created meanwhile by someone else), not created again"
  else
    echo "create-topics: $name: already exists ($current partitions), not created again"
  fi
  if [[ $current != "?" && $current != "$partitions" ]]; then
    echo "create-topics: warning: $name has $current partitions, topics.yaml says $partitions;" \
      "not changed (adding partitions re-maps keys and breaks per-aggregate order)" >&2
  fi
  if ((alter)) && ((${#configs[@]} > 0)); then
    if ! output=$("${set_configs[@]}" 2>&1); then
      echo "$output" >&2
      die "setting the configs of $name failed"
    fi
    echo "create-topics: $name: configs set (${configs[*]})"
  fi
done
