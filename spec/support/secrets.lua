-- spec/support/secrets.lua -- fresh host.crypto keys for a black-box spec's server.
--
--   local secrets = require "spec.support.secrets"
--   server.start{ env = secrets.env() }   -- FCFS_SECRET_SEAL_KEYS / _BLIND_KEY / _TOKEN_KEY
--   secrets.env{ FCFS_LOG_LEVEL = "info" } -- the keys plus more variables
local shell = require "spec.support.shell"

local secrets = {}

-- 32 random bytes, base64.
function secrets.key()
    local _, out = shell.sh("head -c 32 /dev/urandom | base64 -w0")
    return (out:gsub("%s+", ""))
end

function secrets.env(more)
    local e = {
        FCFS_SECRET_SEAL_KEYS = "1:" .. secrets.key(),
        FCFS_SECRET_BLIND_KEY = secrets.key(),
        FCFS_SECRET_TOKEN_KEY = secrets.key(),
    }
    for k, v in pairs(more or {}) do e[k] = v end
    return e
end

return secrets
