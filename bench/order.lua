-- bench/order.lua -- wrk script: POST /api/orders with the JSON body in $ORDER_BODY as the member
-- whose access token is $BENCH_TOKEN, and the RESULT line of bench/report.lua at the end. Used by
-- bench/orders.sh.
wrk.method = "POST"
wrk.body = os.getenv("ORDER_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
dofile(os.getenv("BENCH_ROOT") .. "/bench/report.lua")
