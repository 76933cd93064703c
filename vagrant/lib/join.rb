# Join material for the Vagrant cluster, made on the host before any VM boots.
#
# Key design choice: the host, not the server VM, makes the cluster CA, the tokens and the
# admin kubeconfig (the server's `ensure_*` keeps files it finds). Every VM then boots and
# provisions in parallel from the one-way (rsync) synced checkout, agents simply retry until
# the server answers, and `vagrant/kubeconfig` exists on the host without copying anything back.
# Files live in vagrant/.join/ (mode 0600, git-ignored); the CA key is synced to the server only.
require "base64"
require "fileutils"
require "openssl"
require "securerandom"
require "yaml"

module NanokubeJoin
  TOKENS = %w[token node-token kubelet-token].freeze

  def self.ensure(dir, server_ip:, kubeconfig:)
    FileUtils.mkdir_p(dir, mode: 0o700)
    TOKENS.each do |t|
      path = File.join(dir, t)
      File.write(path, SecureRandom.hex(24) + "\n", perm: 0o600) unless File.exist?(path)
    end
    # The agents' join token: a bootstrap token ID.SECRET ([a-z0-9]{6}.[a-z0-9]{16}); each agent
    # trades it for a client certificate of its own (system:node:NAME).
    boot = File.join(dir, "bootstrap-token")
    unless File.exist?(boot)
      File.write(boot, "#{token_part(6)}.#{token_part(16)}\n", perm: 0o600)
    end
    crt, key = File.join(dir, "ca.crt"), File.join(dir, "ca.key")
    make_ca(crt, key) unless File.exist?(crt) && File.exist?(key)
    File.write(kubeconfig, kubeconfig_yaml(server_ip, File.read(crt), File.read(File.join(dir, "token")).strip), perm: 0o600)
  end

  def self.token_part(n)
    alphabet = [*"a".."z", *"0".."9"]
    Array.new(n) { alphabet[SecureRandom.random_number(alphabet.size)] }.join
  end

  # An EC P-256 CA like the one `nanokube server` makes itself (CN nanokube-ca, 10 years).
  def self.make_ca(crt, key)
    k = OpenSSL::PKey::EC.generate("prime256v1")
    c = OpenSSL::X509::Certificate.new
    c.version = 2
    c.serial = OpenSSL::BN.rand(63)
    c.subject = c.issuer = OpenSSL::X509::Name.parse("/CN=nanokube-ca")
    c.public_key = k
    c.not_before = Time.now - 60
    c.not_after = Time.now + 3650 * 86_400
    ef = OpenSSL::X509::ExtensionFactory.new(c, c)
    c.add_extension(ef.create_extension("basicConstraints", "CA:TRUE", true))
    c.add_extension(ef.create_extension("keyUsage", "keyCertSign,cRLSign,digitalSignature", true))
    c.add_extension(ef.create_extension("subjectKeyIdentifier", "hash", false))
    c.sign(k, OpenSSL::Digest.new("SHA256"))
    File.write(key, k.to_pem, perm: 0o600)
    File.write(crt, c.to_pem, perm: 0o600)
  end

  def self.kubeconfig_yaml(server_ip, ca_pem, token)
    {
      "apiVersion" => "v1", "kind" => "Config",
      "clusters" => [{ "name" => "nanokube-vagrant", "cluster" => {
        "server" => "https://#{server_ip}:6443", "certificate-authority-data" => Base64.strict_encode64(ca_pem) } }],
      "users" => [{ "name" => "nanokube-vagrant-admin", "user" => { "token" => token } }],
      "contexts" => [{ "name" => "nanokube-vagrant", "context" => {
        "cluster" => "nanokube-vagrant", "user" => "nanokube-vagrant-admin", "namespace" => "default" } }],
      "current-context" => "nanokube-vagrant",
    }.to_yaml
  end
end
