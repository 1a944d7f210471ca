-- bench/report.lua -- wrk script: at the end, one machine-readable line
--   RESULT requests=N seconds=S rps=R p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. sock_err=N non2xx=N
-- sock_err sums wrk's connect, read, write and timeout errors; non2xx is wrk's
-- status error count (responses with a status of 400 or more; this script adds
-- no per-response callback, which would slow wrk down). Used as `wrk -s bench/report.lua`.
local fmt = string.format

function done(summary, latency, _)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local function ms(p) return latency:percentile(p) / 1000 end
  io.write(fmt("RESULT requests=%d seconds=%.2f rps=%.0f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f"
    .. " sock_err=%d non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
    summary.requests, secs, summary.requests / secs, ms(50), ms(90), ms(99), latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, e.status, e.connect, e.read, e.write, e.timeout))
end
