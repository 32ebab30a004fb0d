# Exercises: the steps' own code with a hole to fill or a bug to find,
# checked by the step suite's tests of the claim (exercises/README.md,
# docs/exercises.md). Included at the end of the top-level Makefile; the
# list comes from exercises/*/exercise.toml, nothing here names one.
#
#   make exercises                 every exercise, with its status
#   make exercise NAME=06-drain    your copy in exercises/work/06-drain/, and what to do
#   make check NAME=06-drain       build your copy, run the tests of its claim
#   make exercise-watch NAME=...   the same on every save (Ctrl-C stops)
#   make solution NAME=...         the step's own code beside your copy (a diff)
#   make exercise-reset NAME=...   start over from the stub (asks first; YES=1 does not)
#   make test-exercises            every stub fails its check, every step passes it (make test)

EXERCISE := $(PY) tools/exercises/exercise.py
EXERCISE_YES := $(if $(filter 1 y yes,$(YES)),--yes)
EXERCISES_PYTEST_ARGS ?=

.PHONY: exercises exercise check solution exercise-watch exercise-reset test-exercises \
        exercise-name

exercise-name:
	@test -n "$(NAME)" || { echo "say which one: NAME=06-drain (make exercises lists them)" >&2; exit 2; }

exercises: $(PY)
	@$(EXERCISE) list

exercise: exercise-name deps $(PY)
	@$(EXERCISE) start $(NAME) $(EXERCISE_YES)

check: exercise-name deps $(PY)
	@$(EXERCISE) check $(NAME)

exercise-watch: exercise-name deps $(PY)
	@$(EXERCISE) watch $(NAME)

solution: exercise-name $(PY)
	@$(EXERCISE) solution $(NAME)

exercise-reset: exercise-name $(PY)
	@$(EXERCISE) reset $(NAME) $(EXERCISE_YES)

# The stubs are built in build-exercises-test/; the steps' own binaries are
# build/bin's, which `build` makes.
test-exercises: build $(PY)
	@$(PY) -m pytest tests/exercises $(EXERCISES_PYTEST_ARGS)

test: test-exercises
