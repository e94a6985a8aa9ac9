-- wrk script: POST the mint endpoint with the bearer from the environment.
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_BEARER")
