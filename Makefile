.PHONY: setup demo test bench clean

setup:        ## install system packages that are missing, build
	scripts/setup.sh

demo:         ## set up, then run a local coordinator + 2 CPU workers on a demo job
	scripts/demo.sh

test:         ## set up, then run every test
	scripts/test.sh

bench:        ## control-plane benchmark (coordinator vs raw NNG), results in BENCHMARKS.md
	scripts/bench-control-plane.sh

clean:
	rm -rf .build .demo
