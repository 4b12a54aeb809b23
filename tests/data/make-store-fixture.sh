#!/usr/bin/env bash
# Writes tests/data/store-0.1.0.sqlite3: a database written by a drscreen release, read
# back by tests/store_compat.rs so that a release that changes how rows are read keeps
# opening the databases clinics already have. Run it with the OLD release's binary:
#   bash tests/data/make-store-fixture.sh path/to/old/drscreen
# Needs curl and dcmtk (img2dcm, storescu). Uses only the fixtures' images.
set -euo pipefail
bin=$(realpath "$1")
cd "$(dirname "$0")/../.."
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
key() { "$bin" --data-dir "$dir/data" keys create --role "$1" | tail -n 1; }
device=$(key device)
clinician=$(key clinician)
"$bin" --data-dir "$dir/data" --listen 127.0.0.1:0 --dicom-port 0 --dicom-study-stable-secs 1 serve >"$dir/out" &
pid=$!
for _ in $(seq 1 600); do [ "$(wc -l <"$dir/out")" -ge 2 ] && break; sleep 0.1; done
url=$(sed -n 's/^drscreen listening on //p' "$dir/out")
port=$(sed -n 's/^drscreen dicom listening on [^:]*:\([0-9]*\).*/\1/p' "$dir/out")
# An HTTP exam (referral in one eye), reviewed and signed by a clinician.
exam=$(curl -sf -H "Authorization: Bearer $device" -F left=@fixtures/grade4_L.jpg -F right=@fixtures/grade0_R.jpg \
  -F 'metadata={"external_exam_ref":"ACC-COMPAT-1","patient_ref":"P-COMPAT-1"};type=application/json' "$url/v1/exams" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -H "Authorization: Bearer $clinician" -H 'Content-Type: application/json' \
  -d '{"eyes":{"left":{"grade":4,"dme":false},"right":{"grade":0,"dme":false}},"outcome":"urgent_referral","note":"compat","sign":true}' \
  "$url/v1/exams/$exam/reviews" >/dev/null
# An ungradable exam over HTTP, and a DICOM study by C-STORE.
curl -sf -H "Authorization: Bearer $device" -F right=@fixtures/ungradable_dark_R.jpg "$url/v1/exams" >/dev/null
img2dcm -q fixtures/grade0_L.jpg "$dir/l.dcm" -k "ImageLaterality=L" -k "PatientID=P-COMPAT-2" -k "StudyInstanceUID=1.2.826.0.1.3680043.10.1024.1"
storescu -q -xy -aec DRSCREEN 127.0.0.1 "$port" "$dir/l.dcm"
for _ in $(seq 1 300); do
  n=$(curl -sf -H "Authorization: Bearer $clinician" "$url/v1/exams" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  [ "$n" -ge 3 ] && break; sleep 0.2
done
kill -TERM "$pid"; wait "$pid" || true
# The server's connection may leave committed pages in the WAL; VACUUM INTO writes one
# self-contained file with everything committed.
rm -f tests/data/store-0.1.0.sqlite3
python3 -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute("VACUUM INTO ?", (sys.argv[2],))' \
  "$dir/data/drscreen.sqlite3" tests/data/store-0.1.0.sqlite3
echo "wrote tests/data/store-0.1.0.sqlite3 ($(stat -c %s tests/data/store-0.1.0.sqlite3) bytes)"
