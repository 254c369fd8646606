.PHONY: setup demo test bench clean

setup:        ## install system packages that are missing, build
	scripts/setup.sh

demo:         ## set up, then run a local coordinator + 2 CPU workers on a demo job
	scripts/demo.sh

test:         ## set up, then run every test
	scripts/test.sh

bench:        ## benchmarks: control plane vs raw NNG, then the metrics path (see BENCHMARKS.md)
	scripts/bench-control-plane.sh
	scripts/bench-metrics.sh

clean:
	rm -rf .build .demo
