package join

import (
	"net"
	"strings"
)

// Host is the host other hosts reach this node at: advertise's host (the
// --advertise-addr, host or host:port); else bind's host (a listener's
// configured address) when it names one; else the first private address
// of this host (FirstPrivateIP); else 127.0.0.1.
func Host(advertise, bind string) string {
	host := advertise
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host != "" {
		return host
	}
	if h, _, err := net.SplitHostPort(bind); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		return h
	}
	if ip := FirstPrivateIP(); ip != "" {
		return ip
	}
	return "127.0.0.1"
}

// Advertised is the host:port other nodes dial for a listener configured
// at bind and bound at bound: Host with the bound port.
func Advertised(advertise, bind, bound string) string {
	_, port, _ := net.SplitHostPort(bound)
	return net.JoinHostPort(Host(advertise, bind), port)
}

// FirstPrivateIP is the address other hosts most likely reach this one at:
// a private IPv4 address of an interface that is up, else a private IPv6
// (unique local) one, else a global unicast one; container bridges and
// virtual pairs, which other hosts cannot reach, are skipped. "" when
// there is none.
func FirstPrivateIP() string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	var ips []net.IP
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if n := ifc.Name; strings.HasPrefix(n, "docker") || strings.HasPrefix(n, "br-") || strings.HasPrefix(n, "veth") || strings.HasPrefix(n, "virbr") {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				ips = append(ips, ipn.IP)
			}
		}
	}
	return pickIP(ips)
}

// pickIP is FirstPrivateIP's choice among the interfaces' addresses.
func pickIP(ips []net.IP) string {
	for _, pick := range []func(net.IP) bool{
		func(ip net.IP) bool { return ip.To4() != nil && ip.IsPrivate() },
		func(ip net.IP) bool { return ip.To4() == nil && ip.IsPrivate() },
		func(ip net.IP) bool { return ip.To4() != nil && ip.IsGlobalUnicast() },
		func(ip net.IP) bool { return ip.To4() == nil && ip.IsGlobalUnicast() },
	} {
		for _, ip := range ips {
			if pick(ip) {
				return ip.String()
			}
		}
	}
	return ""
}
