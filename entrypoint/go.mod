module spotrun.dev/entrypoint

go 1.26.0
