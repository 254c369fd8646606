.PHONY: setup demo test bench clean

setup:        ## install system packages that are missing, build, prepare the speaker encoder (SIM)
	scripts/setup.sh

demo:         ## set up, then run a local coordinator + 2 CPU workers on a demo job
	scripts/demo.sh

test:         ## set up, then run every test
	scripts/test.sh

bench:        ## every benchmark (see BENCHMARKS.md): control plane, metrics, alerts, torch loop, evaluation
	scripts/bench-control-plane.sh
	scripts/bench-metrics.sh
	scripts/bench-alerts.sh
	scripts/bench-torch.sh
	scripts/bench-eval.sh

clean:
	rm -rf .build .demo
