# canary: PostgreSQL extension built with PGXS

EXTENSION = canary
MODULE_big = canary
EXTVERSION = 1.0

OBJS = \
	src/canary.o \
	src/evaluation.o \
	src/logscan.o \
	src/metrics.o \
	src/notify.o \
	src/operator.o \
	src/rollout.o \
	src/routing.o \
	src/spi_helpers.o \
	src/stats.o \
	src/worker.o

# The install script is assembled from one file per concern under
# sql/install, in file name order, so each concern keeps its objects together.
INSTALL_PARTS = $(sort $(wildcard sql/install/*.sql))
DATA_built = sql/$(EXTENSION)--$(EXTVERSION).sql

PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
SHLIB_LINK = -lcrypto

REGRESS = routing statistics metrics sequential lifecycle
ISOLATION = routing_cache create_race evaluate_race rollback_promote_race route_transition
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = results regression.diffs regression.out \
	test/isolation/results test/isolation/output_iso \
	test/isolation/regression.diffs test/isolation/regression.out

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/$(EXTENSION)--$(EXTVERSION).sql: $(INSTALL_PARTS)
	cat $^ > $@

# Rollout demo over a real LLM traffic trace; see the top of demo/run.sh.
.PHONY: demo
demo:
	bash $(srcdir)/demo/run.sh
