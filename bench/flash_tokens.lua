-- bench/flash_tokens.lua: access tokens for bench/flash_vs_peer.sh (run with `fcfs run`, not part of the app).
--
--   fcfs -c CONF run bench/flash_tokens.lua N FIRST_UID TOKENS_FILE
--
-- Mints an access token for each member id FIRST_UID .. FIRST_UID + N - 1 with the token key (lib/auth.lua
-- issue: no argon2, no MySQL row -- the flash entry checks the token locally and never reads the
-- member) and writes them, one a line, to TOKENS_FILE. Minted before the clock starts.
local auth = require "lib.auth"

local n, first, out = tonumber((...)), tonumber((select(2, ...))), select(3, ...)
if not (n and first and out) then
    io.stderr:write("usage: fcfs -c CONF run bench/flash_tokens.lua N FIRST_UID TOKENS_FILE\n")
    return 2
end
local f = assert(io.open(out, "w"))
for uid = first, first + n - 1 do
    f:write((auth.issue(uid, uid, "USER")), "\n")
end
f:close()
return 0
