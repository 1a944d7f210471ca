-- bench/flash_entry.lua -- wrk script: every request is a flash entry (POST, the URL given to wrk) by
-- another member. The tokens (bench/flash_tokens.lua) are read from the file named by the global
-- tokens_file (set by a line put before this script) or else $TOKENS; thread t of $THREADS uses
-- lines t+1, t+1+THREADS, ... so no two requests of a run share a member until the file is used up;
-- then it starts over at its first line (on the buy path those entries answer 409 ALREADY_PURCHASED,
-- counted as non-2xx, so too short a file cannot go unnoticed; on the sold-out path a short file is
-- a crowd of members clicking again). bench/flash_vs_peer.sh appends bench/report.lua (the RESULT line).
local tokens, n, i = {}, 0, 0
local format = wrk.format
local headers = {}

function setup(thread)
  thread:set("tid", (nthreads_seen or 0))
  nthreads_seen = (nthreads_seen or 0) + 1
end

function init(_)
  local stride = tonumber(os.getenv("THREADS") or "1")
  local me = tid or 0
  local line = 0
  for tok in io.lines((assert(tokens_file or os.getenv("TOKENS"), "TOKENS: the token file"))) do
    if line % stride == me then
      n = n + 1
      tokens[n] = "Bearer " .. tok
    end
    line = line + 1
  end
  assert(n > 0, "no tokens for thread " .. me)
end

function request()
  i = i + 1
  if i > n then i = 1 end
  headers.Authorization = tokens[i]
  return format("POST", nil, headers)
end
