package config

import (
	"fmt"
	"io"
	"strconv"
)

// Usage prints every flag with its placeholder, environment variable,
// default and meaning, grouped by topic.
func Usage(w io.Writer) {
	def := Defaults()
	fmt.Fprintf(w, "Settings (precedence: flag, then environment variable, then --config file, then default):\n")
	group := ""
	for _, o := range options {
		if o.group != group {
			group = o.group
			fmt.Fprintf(w, "\n%s:\n", group)
		}
		if o.flag {
			fmt.Fprintf(w, "  --%s\n", o.name)
		} else {
			fmt.Fprintf(w, "  --%s %s\n", o.name, o.arg)
		}
		fmt.Fprintf(w, "        %s\n", o.help)
		d := o.get(&def)
		switch {
		case d == "":
			d = "none"
		case o.quoted:
			d = strconv.Quote(d)
		}
		fmt.Fprintf(w, "        env %s, default %s\n", EnvName(o.name), d)
	}
}
