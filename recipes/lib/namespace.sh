# shellcheck shell=bash
# Sourced by the GPU recipes. The repository is the `stopsign` namespace through pyproject's package
# map; on a machine without this project's install, a folder of links gives Python the same view.
#   stopsign_namespace ROOT WORK   (then `stopsign.*` imports from ROOT through WORK/ns)
stopsign_namespace() {
  mkdir -p "$2/ns/stopsign"
  for p in edge train export calibration; do ln -sfn "$1/$p" "$2/ns/stopsign/$p"; done
  export PYTHONPATH="$2/ns${PYTHONPATH:+:$PYTHONPATH}"
}
