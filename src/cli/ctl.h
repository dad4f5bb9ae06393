/* cli/ctl.h: the operator's commands against a running system: `cmesh status`, `cmesh
 * scale`, `cmesh logs`, and the lookup that lets `cmesh token` sign with the running
 * system's key. Each finds ./cmesh.yaml (or --config, or $CMESH_CONFIG) and from it the
 * control API and the state directory; no other flag is needed. */
#ifndef CMESH_CLI_CTL_H
#define CMESH_CLI_CTL_H

int cm_ctl_status_main(int argc, char **argv);
int cm_ctl_scale_main(int argc, char **argv);
int cm_ctl_logs_main(int argc, char **argv);
int cm_ctl_rollout_main(int argc, char **argv); /* cmesh rollout SERVICE */
int cm_ctl_reload_main(int argc, char **argv);  /* cmesh reload */
/* `cmesh token` given neither --config nor --auth-key: when a cmesh.yaml is found, runs
 * gw_token_main with --config STATE/gateway.yaml (the running system's gateway file).
 * Returns the exit status, or -1 when there is no cmesh.yaml to use (run as usual). */
int cm_ctl_token_main(int argc, char **argv);

#endif
