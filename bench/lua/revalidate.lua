-- Scenario 4: a browser revalidating a cached image. Every request carries
-- the ETag the server itself returned (BENCH_ETAG), so the answer is a 304.

wrk.headers["If-None-Match"] = os.getenv("BENCH_ETAG")

dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
