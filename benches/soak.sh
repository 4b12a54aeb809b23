#!/usr/bin/env bash
# Soak (issue 18): a mixed load against one `drscreen serve` for SOAK_SECS (default 1200 s,
# 20 minutes) while the server's RSS, open fds and threads are sampled every 10 s.
#
#   benches/soak.sh                      # needs a release build: cargo build --release
#   SOAK_SECS=120 DRSCREEN_BIN=target/debug/drscreen benches/soak.sh
#
# The load, all at once:
#   - exams:   multipart POST /v1/exams with two images, back to back (ids kept);
#   - grade:   `drscreen loadtest` on /v1/grade, 4 workers (throughput and latency);
#   - broken:  every file in fixtures/broken/ to /v1/grade (each must be a 4xx);
#   - kserve:  KServe v2 infer with one JPEG through the binary tensor extension;
#   - dicom:   a new two-image study per association through dcmtk's storescu;
#   - slow:    16 clients that send half a request header and go quiet (the header read
#              timeout must close them) and 4 that send a body at a trickle.
# At the end every acknowledged exam must read back (GET /v1/exams/{id} and its images),
# and no answer may be a 5xx. Samples go to $SOAK_OUT/samples.csv; a summary is printed.
# Not part of the test suite: it takes 20 minutes. The closing notes report its numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SOAK_SECS:-1200}
BIN=${DRSCREEN_BIN:-target/release/drscreen}
OUT=${SOAK_OUT:-$(mktemp -d /tmp/drscreen-soak.XXXXXX)}
mkdir -p "$OUT/data"
for tool in curl jq img2dcm storescu; do
  command -v $tool >/dev/null || { echo "soak needs $tool (tests/run.sh installs dcmtk)" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "no $BIN: cargo build --release first, or set DRSCREEN_BIN" >&2; exit 2; }

"$BIN" --data-dir "$OUT/data" --listen 127.0.0.1:0 --dicom-port 0 --dicom-study-stable-secs 2 \
  --http-header-read-secs 5 serve >"$OUT/serve.out" 2>"$OUT/serve.log" &
PID=$!
trap 'kill $PID 2>/dev/null || true; jobs -p | xargs -r kill 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do [ "$(wc -l <"$OUT/serve.out")" -ge 2 ] && break; sleep 1; done
URL=$(sed -n 's/^drscreen listening on //p' "$OUT/serve.out")
DICOM_PORT=$(sed -n 's/^drscreen dicom listening on [^ ]*:\([0-9]*\) .*/\1/p' "$OUT/serve.out")
HOSTPORT=${URL#http://}
[ -n "$URL" ] && [ -n "$DICOM_PORT" ] || { echo "server did not start" >&2; cat "$OUT/serve.log" >&2; exit 1; }
KEY=$("$BIN" --data-dir "$OUT/data" keys create --role device | tail -1)
AUTH="Authorization: Bearer $KEY"
END=$(( $(date +%s) + SECS ))
running() { [ "$(date +%s)" -lt "$END" ]; }
echo "soak: $SECS s against $URL (pid $PID, dicom port $DICOM_PORT), output in $OUT"

exams() {
  local reply="$OUT/exam-$1.json"
  while running; do
    code=$(curl -s -o "$reply" -w '%{http_code}' -H "$AUTH" \
      -F left=@fixtures/grade4_L.jpg -F right=@fixtures/grade0_R.jpg \
      -F 'metadata={"external_exam_ref":"SOAK","patient_ref":"P-SOAK"};type=application/json' "$URL/v1/exams")
    echo "$code" >>"$OUT/exams.status"
    if [ "$code" = 201 ]; then jq -r .id "$reply" >>"$OUT/exam-ids"; fi
  done
}

broken() {
  while running; do
    for f in fixtures/broken/*; do
      curl -s -o /dev/null -w '%{http_code}\n' -H "$AUTH" -H "Content-Type: image/jpeg" \
        --data-binary "@$f" "$URL/v1/grade" >>"$OUT/broken.status"
    done
    sleep 0.5
  done
}

kserve() {
  local img=fixtures/grade2_R.jpg body="$OUT/kserve.bin" size header
  size=$(stat -c %s "$img")
  header=$(printf '{"inputs":[{"name":"image_bytes","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":%d}}],"outputs":[{"name":"finding"}]}' $((size + 4)))
  { printf '%s' "$header"; printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((size & 255)) $((size >> 8 & 255)) $((size >> 16 & 255)) $((size >> 24 & 255)))"; cat "$img"; } >"$body"
  while running; do
    curl -s -o /dev/null -w '%{http_code}\n' -H "$AUTH" -H "Inference-Header-Content-Length: ${#header}" \
      --data-binary "@$body" "$URL/v2/models/dr-synth/infer" >>"$OUT/kserve.status"
    sleep 0.2
  done
}

dicom() {
  local n=0 dir="$OUT/dicom" lat op
  mkdir -p "$dir"
  op=(-k "AcquisitionDeviceTypeCodeSequence[0].CodeValue=409898007" -k "AcquisitionDeviceTypeCodeSequence[0].CodingSchemeDesignator=SCT"
      -k "AcquisitionDeviceTypeCodeSequence[0].CodeMeaning=Fundus camera" -k "AnatomicRegionSequence[0].CodeValue=81745001"
      -k "AnatomicRegionSequence[0].CodingSchemeDesignator=SCT" -k "AnatomicRegionSequence[0].CodeMeaning=Eye")
  while running; do
    n=$((n + 1))
    study="2.25.$(( $(date +%s%N) % 100000000000 ))$n"
    for lat in R L; do
      img2dcm -q -oph "${op[@]}" -k "StudyInstanceUID=$study" -k "PatientID=SOAK-$n" -k "ImageLaterality=$lat" \
        "fixtures/grade1_$lat.jpg" "$dir/$lat.dcm"
    done
    # -xy: propose JPEG baseline, the files' transfer syntax.
    if storescu -q -xy -aec DRSCREEN -aet SOAKSCU 127.0.0.1 "$DICOM_PORT" "$dir/R.dcm" "$dir/L.dcm"; then
      echo ok >>"$OUT/dicom.status"
    else
      echo fail >>"$OUT/dicom.status"
    fi
    sleep 1
  done
}

slow_header() {
  while running; do
    exec {fd}<>"/dev/tcp/${HOSTPORT%:*}/${HOSTPORT#*:}" || { sleep 1; continue; }
    printf 'POST /v1/grade HTTP/1.1\r\nHost: soak\r\n' >&$fd
    # The server's header read timeout (5 s here) must close it; the read returns then.
    timeout 30 cat <&$fd >/dev/null || echo "held-open" >>"$OUT/slow.status"
    exec {fd}>&-
  done
}

slow_body() {
  while running; do
    exec {fd}<>"/dev/tcp/${HOSTPORT%:*}/${HOSTPORT#*:}" || { sleep 1; continue; }
    printf 'POST /v1/grade HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer %s\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n' "$KEY" >&$fd
    for _ in 1 2 3 4 5; do printf 'xxxxxxxxxx' >&$fd 2>/dev/null || break; sleep 8; done
    reply=$(timeout 60 head -c 12 <&$fd 2>/dev/null || true)
    echo "${reply:-closed without an answer}" >>"$OUT/slow-body.status"
    exec {fd}>&-
  done
}

sample() {
  echo "secs,rss_kb,fds,threads" >"$OUT/samples.csv"
  local start
  start=$(date +%s)
  while running && kill -0 $PID 2>/dev/null; do
    echo "$(( $(date +%s) - start )),$(awk '/VmRSS/{print $2}' /proc/$PID/status),$(ls /proc/$PID/fd | wc -l),$(awk '/Threads/{print $2}' /proc/$PID/status)" >>"$OUT/samples.csv"
    sleep 10
  done
}

sample &
exams 1 &
exams 2 &
broken &
kserve &
dicom &
for _ in $(seq 1 16); do slow_header & done
for _ in $(seq 1 4); do slow_body & done
"$BIN" loadtest --url "$URL" --key "$KEY" --images fixtures --concurrency 4 --warmup 0 --duration "$SECS" --json \
  >"$OUT/loadtest.json" 2>"$OUT/loadtest.log" || true
wait $(jobs -p | grep -v "^$PID$") 2>/dev/null || true
sleep 5 # let the last DICOM study settle and grade

# Every acknowledged exam must read back, images included: one curl per phase, each URL
# on the same keep-alive connection (a curl per exam took 20 minutes for 8,000 exams).
acked=$(wc -l <"$OUT/exam-ids") lost=0
mkdir -p "$OUT/check"
awk -v u="$URL" -v d="$OUT/check" '{printf "url = \"%s/v1/exams/%s\"\noutput = \"%s/%s.json\"\n", u, $1, d, $1}' "$OUT/exam-ids" >"$OUT/exams.curl"
lost=$(( lost + $(curl -s -H "$AUTH" -K "$OUT/exams.curl" -w '%{http_code}\n' | grep -vc '^200$' || true) ))
cat "$OUT"/check/*.json 2>/dev/null | jq -r '.image_ids[]? // empty' | awk -v u="$URL" '{printf "url = \"%s/v1/images/%s\"\noutput = \"/dev/null\"\n", u, $1}' >"$OUT/images.curl"
lost=$(( lost + $(curl -s -H "$AUTH" -K "$OUT/images.curl" -w '%{http_code}\n' | grep -vc '^200$' || true) ))
images=$(grep -c '^url' "$OUT/images.curl" || true)

count() { if [ -f "$OUT/$1" ]; then grep -c "$2" "$OUT/$1" || true; else echo 0; fi; }
fives=$(cat "$OUT"/*.status 2>/dev/null | grep -c '^5' || true)
fives=$((fives + $(jq '[.statuses | to_entries[] | select(.key | startswith("5")) | .value] | add // 0' "$OUT/loadtest.json" 2>/dev/null || echo 0)))
summary() {
  echo "duration_s=$SECS"
  echo "exams: $(wc -l <"$OUT/exams.status") sent, $(count exams.status '^201$') acknowledged, $acked and their $images images read back, $lost unreadable"
  echo "broken: $(wc -l <"$OUT/broken.status") sent, $(grep -c '^4' "$OUT/broken.status" || true) answered 4xx"
  echo "kserve: $(wc -l <"$OUT/kserve.status") sent, $(count kserve.status '^200$') answered 200"
  echo "dicom associations: $(count dicom.status ok) ok, $(count dicom.status fail) failed; studies graded: $(curl -s -H "$AUTH" "$URL/metrics" | awk '/^drscreen_exams_total\{channel="dicom"\}/{print $2}')"
  echo "slow header clients held open past 30 s: $(count slow.status held-open)"
  echo "slow body clients answered: $(sort "$OUT/slow-body.status" | uniq -c | tr '\n' ';')"
  echo "5xx answers (all loads): $fives"
  echo "loadtest: $(jq -c '{requests_per_s: .requests_per_s, statuses: .statuses, p50_ms: .latency_ms.p50, p99_ms: .latency_ms.p99}' "$OUT/loadtest.json" 2>/dev/null || cat "$OUT/loadtest.json")"
  awk -F, 'NR==2{f=$2;fd0=$3} NR>1{if(min==""||$2<min)min=$2; if($2>max)max=$2; if(fmin==""||$3<fmin)fmin=$3; if($3>fmax)fmax=$3; l=$2; lfd=$3; n++}
    END{printf "rss_kb: first %d min %d max %d last %d (%d samples)\nfds: first %d min %d max %d last %d\n", f, min, max, l, n, fd0, fmin, fmax, lfd}' "$OUT/samples.csv"
  echo "server log: $(grep -c ' WARN ' "$OUT/serve.log" || true) WARN lines, $(grep -c ' ERROR ' "$OUT/serve.log" || true) ERROR lines"
}
summary | tee "$OUT/summary.txt"
kill -TERM $PID
wait $PID || true
[ "$lost" -eq 0 ] && [ "$fives" -eq 0 ]
