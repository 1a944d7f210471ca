-- Specs of the suite's own checks (spec/support/server.lua): a sanitizer report left by any
-- process the specs start fails the spec, whatever the build. A stand-in binary writes a report
-- where ASAN_OPTIONS' log_path says, as a sanitized fcfs would.
local server = require "spec.support.server"
local shell = require "spec.support.shell"

local FAKE = [[#!/bin/sh
# writes a sanitizer report to the log_path of ASAN_OPTIONS, then exits 0
path=$(printf '%s\n' "$ASAN_OPTIONS" | tr ':' '\n' | sed -n 's/^log_path=//p' | tail -n 1)
[ -n "$path" ] || exit 3
printf '==%d==ERROR: AddressSanitizer: heap-use-after-free (planted)\n' $$ >"$path.$$"
exit 0
]]

describe("spec/support/server.lua", function()
    local s, fake

    before_each(function()
        s = server.start{}
        fake = s.dir .. "/fake-fcfs"
        local f = assert(io.open(fake, "w"))
        f:write(FAKE)
        f:close()
        assert(shell.sh("chmod +x " .. shell.q(fake)) == 0)
    end)

    after_each(function()
        pcall(s.stop, s)
    end)

    it("passes a clean CLI call and a clean stop", function()
        local code, out = s:cli("-t")
        assert.equal(0, code, out)
        s:stop()
        s:assert_no_errors()
    end)

    it("fails a CLI call that leaves a sanitizer report", function()
        local real = s.bin
        s.bin = fake
        local ok, err = pcall(s.cli, s, "-t")
        s.bin = real
        assert.is_false(ok)
        assert.matches("sanitizer report after fcfs %-t", err)
        assert.matches("heap-use-after-free (planted)", err, 1, true)
    end)

    it("fails the stop of a server that left a sanitizer report", function()
        local f = assert(io.open(s.dir .. "/sanitizer.4242", "w"))
        f:write("==4242==ERROR: LeakSanitizer: detected memory leaks (planted)\n")
        f:close()
        local ok, err = pcall(s.stop, s)
        assert.is_false(ok)
        assert.matches("detected memory leaks (planted)", err, 1, true)
        assert.has_error(function()
            s:assert_no_errors()
        end)
    end)
end)
