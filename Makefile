# Restaurant floor and kitchen messaging: build and run targets.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
APPS    := table_button waiter_pager kitchen_display
TABLES  ?= 6
PAGERS  ?= 3
MINUTES ?= 5

.PHONY: help setup run test fuzz firmware font sim clean flash bench rush faults

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

setup: $(STAMP)  ## create the venv with pinned requirements

run: $(STAMP)  ## start the hub with its embedded broker (127.0.0.1:1883, http :8080)
	$(BIN)/python -m hub $(ARGS)

test: $(STAMP)  ## run every test (needs mosquitto installed; see .ci/run)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m pytest -q tests

fuzz: $(STAMP)  ## fuzz protocol decode, the order channels, floor and menu loaders (FUZZ=100000 inputs each)
	FUZZ_EXAMPLES=$(or $(FUZZ),100000) $(BIN)/python -m pytest -v tests/test_fuzz.py

firmware: $(STAMP)  ## compile each device app to .mpy bundles in build/fw and print sizes
	$(BIN)/python firmware/build.py --out build/fw $(APPS)

font: $(STAMP)  ## rebuild display/font16.bin from fonts-wqy-zenhei: ASCII + display/kitchen_words.txt (+ MENU=menu.json)
	$(BIN)/python display/fontgen.py $(if $(MENU),--text-file "$(MENU)")

flash: $(STAMP)  ## blank ESP32 to registered device: PORT=/dev/ttyUSB0 KIND=table ID=T12 FIRMWARE=mp.bin WIFI_SSID=.. HUB=http://..:8080 (Wi-Fi key: env RFM_WIFI_PSK; FLASH_ARGS=--help)
	$(BIN)/python firmware/flash.py --port "$(PORT)" --kind "$(KIND)" --id "$(ID)" $(if $(FIRMWARE),--firmware "$(FIRMWARE)") $(if $(HUB),--hub "$(HUB)") $(if $(MODEL),--model "$(MODEL)") $(if $(WIFI_SSID),--wifi-ssid "$(WIFI_SSID)") $(FLASH_ARGS)

sim: $(STAMP)  ## a simulated restaurant: hub + TABLES buttons + PAGERS pagers on real firmware
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python firmware/simulate.py --tables $(TABLES) --pagers $(PAGERS)

bench: $(STAMP)  ## floor vs hub on amqtt and Mosquitto, firmware heap; JSON in build/bench.json (BENCH_ARGS=--help)
	mkdir -p build
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python tests/bench/run.py --out build/bench.json $(BENCH_ARGS)

rush: $(STAMP)  ## dinner rush through the real hub, RUSH_MINUTES (default 2): 200 tables, 30 pagers, 6 displays; exit 1 on loss
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python tests/bench/rush.py --minutes $(or $(RUSH_MINUTES),2) $(RUSH_ARGS)

faults: $(STAMP)  ## fault suite: 50 hub kills, broker restart, black hole, duplicates, slow subscriber (FAULTS_ARGS=--quick)
	mkdir -p build
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python tests/bench/faults.py --out build/faults.json $(FAULTS_ARGS)

clean:  ## remove build output and local hub data
	rm -rf build data .pytest_cache
