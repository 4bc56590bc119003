#!/usr/bin/perl
# One request to Vigil's signer over its Unix socket, framed as docs/protocol.md says (a
# 4-byte big-endian length, then the JSON): the boot test (tests/boot/run) runs it INSIDE
# the booted container, as the user whose uid the signer should see (SO_PEERCRED), e.g.
#   runuser -u vigil -- vigil-boot-request /run/vigil/signer.sock '{"v":1,"id":"h1","op":"hello"}'
# and prints the answer's JSON on one line. Perl because Debian's minimal root has it
# (perl-base) and nothing else that speaks to a Unix socket.
use strict;
use warnings;
use IO::Socket::UNIX;

my ($path, $json) = @ARGV;
die "usage: $0 SOCKET JSON\n" unless defined $json;
die "the request is larger than a frame (65536 bytes)\n" if length($json) > 65536;
my $sock = IO::Socket::UNIX->new(Type => SOCK_STREAM(), Peer => $path)
    or die "cannot connect to $path: $!\n";
print {$sock} pack('N', length $json) . $json or die "cannot write to $path: $!\n";

sub read_exact {
    my ($n) = @_;
    my $buf = '';
    while (length($buf) < $n) {
        my $got = sysread($sock, $buf, $n - length($buf), length($buf));
        die "read from $path: $!\n" unless defined $got;
        die "the signer closed the connection after " . length($buf) . " of $n bytes\n" if $got == 0;
    }
    return $buf;
}

my $len = unpack('N', read_exact(4));
die "the answer's length $len is not a valid frame length\n" if $len < 1 || $len > 65536;
print read_exact($len), "\n";
