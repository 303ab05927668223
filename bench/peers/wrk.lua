-- wrk script for bench/peers/run.py: bench/wrk.lua (the fixed body, the key and
-- the check of every answer's status and body), plus the request headers a peer
-- needs (Portkey's x-portkey-provider and x-portkey-custom-host), given in
-- BENCH_HEADERS as "Name: value" lines.

local dir = debug.getinfo(1, "S").source:sub(2):match("^(.*)/[^/]*$") or "."
dofile(dir .. "/../wrk.lua")

for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end
