-- bench/login.lua -- wrk script: POST /api/auth/login with the JSON body in $LOGIN_BODY, and the
-- RESULT line of bench/report.lua at the end. Used by bench/members.sh.
wrk.method = "POST"
wrk.body = os.getenv("LOGIN_BODY")
wrk.headers["Content-Type"] = "application/json"
dofile(os.getenv("BENCH_ROOT") .. "/bench/report.lua")
