-- lib/channel.lua: a Redis pub/sub subscription that lives as long as the VM generation.
--
--   host.timer.at(0, channel.follow("auth:revoked", {
--       label = "revocation subscriber",       -- for the log line when the subscription breaks
--       on_message = function(payload) ... end,  -- each message published on the channel
--       on_subscribed = function() return true end, -- optional: after each (re)subscription
--                                                 --   (catch up on what was missed); nil, err retries
--       state = {},                              -- optional: .subscribed kept up to date
--   }))
--
-- It holds a pinned connection, wakes every second to look at host.exiting(), and resubscribes
-- after a failure with a backoff from 50 ms doubling to 1 s.
local host = require "host"

local type, tostring, min = type, tostring, math.min

local _M = {}

local function once(name, opts, state)
    local pin, err = host.redis.pin()
    if not pin then return err end
    pin:set_timeout(1) -- the read below wakes up every second to look at host.exiting()
    local ok
    ok, err = pin:call("SUBSCRIBE", name)
    if ok and opts.on_subscribed then
        ok, err = opts.on_subscribed()
    end
    if ok then
        state.subscribed = true
        state.backoff = 0.05
        while not host.exiting() do
            local msg
            msg, err = pin:read_reply()
            if msg then
                -- {"message", channel, payload}; the SUBSCRIBE confirmation and others are ignored
                if type(msg) == "table" and msg[1] == "message" and type(msg[3]) == "string" then
                    opts.on_message(msg[3])
                end
            elseif err ~= "timeout" then
                break
            end
        end
        state.subscribed = false
    end
    pin:release()
    return err
end

-- channel.follow(name, opts) -> a timer callback that subscribes until the generation retires.
function _M.follow(name, opts)
    local state = opts.state or {}
    state.subscribed, state.backoff = false, 0.05
    return function(premature)
        if premature then return end
        while not host.exiting() do
            local err = once(name, opts, state)
            if host.exiting() then break end
            host.log("warn", opts.label or name, ": ", tostring(err), "; resubscribing in ", state.backoff, " s")
            host.sleep(state.backoff)
            state.backoff = min(state.backoff * 2, 1)
        end
    end
end

return _M
