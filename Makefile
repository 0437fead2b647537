# The two set-up commands of the README.
.PHONY: demo test
demo:
	scripts/demo.sh
test:
	scripts/test.sh $(ARGS)
