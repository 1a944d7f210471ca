-- luacheck configuration: `luacheck lua spec` from the repository root.
std = "luajit"
max_line_length = 120
codes = true

files["spec"] = {
    std = "+busted",
}
