// Package config owns the node's configuration: the flags of API.md
// ("Running a node") and edgenode's own, their defaults, the environment
// variables and config file that can also set them, and the checks that a
// configuration is usable before anything starts.
//
// It does not open files named by the configuration (keys, certificates,
// credentials) or listen on addresses; the packages that use them report
// those errors. It knows nothing of subcommands: callers pass the arguments
// after the program name and subcommand.
//
// # Sources and precedence
//
// Every flag --NAME is also read from the environment variable EDGENODE_ plus
// NAME in upper snake case (--jwt-secret: EDGENODE_JWT_SECRET) and from the
// config file named by --config or EDGENODE_CONFIG. A flag beats the
// environment, the environment beats the file, the file beats the default.
// An empty environment variable counts as unset. A list flag (--join,
// --allowed-origins) given twice on the command line accumulates; across
// sources the stronger one replaces the list. A switch (--dev) given alone
// means true; EDGENODE_DEV=true and "dev: true" set it too.
//
// # Config file
//
// One setting per line, as "name: value" (so a flat YAML file works) or
// "name = value", where name is the flag name without dashes. Blank lines and
// lines starting with # are ignored, as is " # comment" after a value. A
// value may be double-quoted (Go escapes apply) or single-quoted (literal);
// lists are comma-separated and may be written [a, b]. Durations use Go
// syntax (90s, 720h). Unknown names, repeated names, indented (nested) lines
// and block scalars are errors that name the file and line.
//
//	# /etc/edgenode.yaml
//	http-addr: ":443"
//	region: eu-west
//	join: [10.0.0.1:7946, 10.0.0.2:7946]
//	tls-cert: /etc/edgenode/tls.crt
//	tls-key: /etc/edgenode/tls.key
//	retention: 720h
package config
