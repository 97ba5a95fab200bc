-- Plain GET of the URL given on wrk's command line (scenarios 1-3).

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
