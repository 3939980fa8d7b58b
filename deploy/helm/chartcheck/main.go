// Command chartcheck checks the output of `helm template` for the callmesh
// chart (scripts/check-helm.sh runs it). It decodes every object strictly
// into its Kubernetes (or prometheus-operator) Go type, so an unknown or
// misspelt field is an error; checks what the chart promises (drain-aware
// grace periods, probes on the listen ports, PDBs, WebSocket timeouts,
// Services and ServiceMonitors that select something, no service links,
// only known CALLMESH_ variables); and, given -callmesh, starts each
// container's command with the environment Kubernetes would give it, in a
// network namespace of its own, to see that callmesh accepts it.
//
//	chartcheck [-callmesh ./callmesh] rendered.yaml...
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	binary := flag.String("callmesh", "", "callmesh binary: read its keys from `help config` and start every container's command with its environment")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: chartcheck [-callmesh PATH] rendered.yaml...")
		os.Exit(2)
	}
	var problems []string
	for _, path := range flag.Args() {
		objs, err := readManifests(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", path, err)
			os.Exit(1)
		}
		var keys map[string]bool
		if *binary != "" {
			if keys, err = envKeys(*binary); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		found := check(objs, keys)
		if *binary != "" {
			found = append(found, runContainers(*binary, objs)...)
		}
		for _, p := range found {
			problems = append(problems, path+": "+p)
		}
		fmt.Printf("%s: %d objects checked, %d problems\n", path, len(objs.all), len(found))
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
