/* control/up.h: `cmesh up` (the control plane: spec → supervisor + registry + probes +
 * API on one libuv loop) and `cmesh down` (stops it, or, when it is gone, the
 * instances its state directory records). Called by cli/main.c. */
#ifndef CMESH_CONTROL_UP_H
#define CMESH_CONTROL_UP_H

int cm_up_main(int argc, char **argv);
int cm_down_main(int argc, char **argv);

/* The spec file a CLI command uses: --config FILE when given (argv is searched; the
 * pair is removed from it), else $CMESH_CONFIG, else ./cmesh.yaml. */
const char *cm_up_config_arg(int *argc, char **argv);

#endif
