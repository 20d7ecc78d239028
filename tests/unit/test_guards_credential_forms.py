"""Credentials in developer material's own forms (guards/detectors/credential_forms.py) and the
assignment forms credentials.py gained with them: options, URLs, records, typed constants,
calls that pass a name and a value, ODBC's braces, new provider prefixes.

Every value is made up in the documented format of its tool or provider.
"""

from __future__ import annotations

import pytest

from guards.detectors.credential_forms import open_form_start
from guards.detectors.secrets import SecretsDetector


def found(text: str) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in SecretsDetector().find(text)]


def values(text: str) -> list[str]:
    return [value for _, value in found(text)]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # command-line options
        ("redis-server --requirepass 'kst-Redis-88qLw2' --port 6380", "kst-Redis-88qLw2"),
        ('command: ["redis-server", "--requirepass", "Rd!s-88qLw2"]', "Rd!s-88qLw2"),
        ("influx write --org ops --token KoMqjjNgVt7YR03zSipw-cqEx --bucket b", None),
        ("pg_dump --password=Hx7!mq-ops db > out.sql", "Hx7!mq-ops"),
        ("curl -sS --user 'deploy:W!ndmill-Deploy-9' https://ci.example/api", "W!ndmill-Deploy-9"),
        ("curl -u admin:Qz8-tr!ck https://x.example/metrics", "Qz8-tr!ck"),
        ("mysql -h db-01.lan -u root -p'K3strel!root' -e 'SHOW TABLES'", "K3strel!root"),
        ("redis-cli -h cache-01.lan -a 'redis-K3strel-cache' INFO memory", "redis-K3strel-cache"),
        ("sshpass -p 'Patchday_2026' ssh ops@bastion", "Patchday_2026"),
        # URLs
        ("REDIS_URL: redis://:kst-Redis-88qLw2@redis:6379/0", "kst-Redis-88qLw2"),
        ("postgres://app:qyW0FAmk*mTstzluP@db.internal:5432/app", "qyW0FAmk*mTstzluP"),
        ("jdbc:oracle:thin:compta/Compta_Nantes44@db-ora:1521/COMPTA", "Compta_Nantes44"),
        (
            "https://acct.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig=HRHDCm2tajT%2FbukSEm"
            "InD097eJ%2Fkh1Kc%2Bqf4pmiW0Rw%3D",
            "HRHDCm2tajT%2FbukSEmInD097eJ%2Fkh1Kc%2Bqf4pmiW0Rw%3D",
        ),
        # records: a name in one field, the value in another
        (
            '{ "key": "adminPassword", "value": "Harrow-Stg-0091!", "enabled": true }',
            "Harrow-Stg-0091!",
        ),
        (
            "env:\n  - name: AWS_SECRET_ACCESS_KEY\n"
            "    value: G7FKi5xgE8wUtOsrQb9VE+F01EaNnnrmd0Un7NkK",
            "G7FKi5xgE8wUtOsrQb9VE+F01EaNnnrmd0Un7NkK",
        ),
        # a .pgpass line
        ("pg-replica.internal:5432:*:readonly:r3adonly-Quill-55", "r3adonly-Quill-55"),
        # assignments in other shapes
        ("define( 'DB_PASSWORD', 'St4g!ng_Wp#Kiel' );", "St4g!ng_Wp#Kiel"),
        (
            "define( 'AUTH_KEY',         '+t#C33X|UZ+xa{vJE}7,]jqi*.V#7s~3' );",
            "+t#C33X|UZ+xa{vJE}7,]jqi*.V#7s~3",
        ),
        ('const API_TOKEN: &str = "tok_8Hq2LmZx9Yw4Vb7N";', "tok_8Hq2LmZx9Yw4Vb7N"),
        ('  password               = "rep0rting-Adm1n-7731"', "rep0rting-Adm1n-7731"),
        ("Server=tcp:sql,1433;Uid=etl;Pwd={Fx9;Etl!nightly};Encrypt=yes", "Fx9;Etl!nightly"),
        (
            'private static final String ADYEN_HMAC = "327ee037860feb980968c674";',
            "327ee037860feb980968c674",
        ),
        (
            'datadog_app_key   = "93ddf91794fb21d105c9e2c7168267d8ccfa2a05"',
            "93ddf91794fb21d105c9e2c7168267d8ccfa2a05",
        ),
        # prose that names what the password opens before "is"
        (
            "the pw for the staging jump box is Mulberry!Kiosk_5530, rotate it",
            "Mulberry!Kiosk_5530",
        ),
        # ... in Swedish, Polish, Norwegian
        ("Lösenordet till testkontot i appen är Kanelbulle#77 och", "Kanelbulle#77"),
        ("Hasło do VPN jest Zx9!kolo-22.", "Zx9!kolo-22"),
        ("Passordet er Fjord#2026", "Fjord#2026"),
        # mail relays' credential files (Postfix sasl_passwd, Exim passwd.client)
        (
            "[smtp.office365.com]:587    relay@lindgrund.de:Rel@y-Lindgrund-0365\n",
            "Rel@y-Lindgrund-0365",
        ),
        (
            "*.mailgun.org:postmaster@mg.example.shop:9488f2c51d14fbc6e76d-3e1c8443\n",
            "9488f2c51d14fbc6e76d-3e1c8443",
        ),
        # LDAP tools' -w
        (
            "ldapsearch -x -H ldaps://dc01 -D 'CN=svc' -w 'J1ra§Sync-2026' -b 'OU=U'",
            "J1ra§Sync-2026",
        ),
        # records: a named object's "value" (Terraform state, ARM parameters), XML attributes
        (
            '"db_password": {\n "sensitive": true,\n "type": "string",\n'
            ' "value": "Vq3$e_rDk)N9h"\n}',
            "Vq3$e_rDk)N9h",
        ),
        ('"adminPassword": { "value": "Az-St@tic!Portal9" },', "Az-St@tic!Portal9"),
        (
            '<add key="ClearTextPassword" value="u6vcjdvag32zjd7djt55wld5" />',
            "u6vcjdvag32zjd7djt55wld5",
        ),
        ('<property name="password" value="Spr1ng!Db"/>', "Spr1ng!Db"),
        # PHP and Ruby hashes; a Bicep parameter; ODBC's braces with "}}" escaped, spaced
        ("  'password' => 'Dr00pal_KB-Ursprung',", "Dr00pal_KB-Ursprung"),
        (':password => "Rub7-Hash!pw",', "Rub7-Hash!pw"),
        ("param sqlAdminPassword string = 'B1cep-SQL!Adm1n_Lg'", "B1cep-SQL!Adm1n_Lg"),
        ("UID = r\nPWD         = {R3p0rt;Ro=ERP}}x}\nEncrypt = yes", "R3p0rt;Ro=ERP}}x"),
        # more names: vendor keys, sssd's authtok, salts, Play's secret.key
        (
            "Dd-Application-Key: 435a558eecd0f2053e43bf37a27ddc1d3dc5ef5f",
            "435a558eecd0f2053e43bf37a27ddc1d3dc5ef5f",
        ),
        ("ldap_default_authtok = ss$d_B1nd.Kx7", "ss$d_B1nd.Kx7"),
        (
            "$settings['hash_salt'] = 'qTN8BTZzVqKJAJsqrNYhso80y2jEiiSfpa8';",
            "qTN8BTZzVqKJAJsqrNYhso80y2jEiiSfpa8",
        ),
        (
            'play.http.secret.key = "9yTAuoC0v6eNxU7mbn2ns3SToxisp5Qx"',
            "9yTAuoC0v6eNxU7mbn2ns3SToxisp5Qx",
        ),
        (
            "PresharedKey = /XwMkTKfL6jElf0/lnHI5WUwc+KDlV4ixIousuunvEE=",
            "/XwMkTKfL6jElf0/lnHI5WUwc+KDlV4ixIousuunvEE=",
        ),
        # XML elements named as credentials; KeePass and property-list records
        ("<pre-shared-key>pfS3nse-to-AWS_tgw</pre-shared-key>", "pfS3nse-to-AWS_tgw"),
        ("<AutoLogon>\n  <Password>\n    <Value>Kiosk#Lobby7</Value>", "Kiosk#Lobby7"),
        (
            '<String><Key>Password</Key><Value ProtectInMemory="True">Sy№logy—Ds920+</Value>',
            "Sy№logy—Ds920+",
        ),
        ("<key>APIPassword</key>\n<string>Pl1st-Secret!x</string>", "Pl1st-Secret!x"),
        # network gear (Cisco type 0 and 7, FortiOS, EdgeOS, SNMP)
        ("username netadmin privilege 15 password 0 Tejo#Ponte25!", "Tejo#Ponte25!"),
        (" key 7 0822455D0A16544541", "0822455D0A16544541"),
        ("        set psksecret F0rt1-HQ::tunnel#88", "F0rt1-HQ::tunnel#88"),
        ("                 pre-shared-secret edgeR0uter-s2s-Porto", "edgeR0uter-s2s-Porto"),
        ("snmp-server community lisb0a-r0-mon RO", "lisb0a-r0-mon"),
        # a one-dash option, a Windows scheduled task's password, cmdkey
        ('./valheim_server -name "DK" -password "skål-og-smør1" -public 1', "skål-og-smør1"),
        (
            'schtasks /create /tn "Export" /ru CORP\\svc /rp "N1ghtly^Exp0rt" /rl HIGHEST',
            "N1ghtly^Exp0rt",
        ),
        ("cmdkey /add:fs01 /user:CORP\\svc /pass:Fs01-Cmd!key", "Fs01-Cmd!key"),
        # C's #define, aws configure, Azure's key listing
        ('#define WIFI_PASSWORD "Şifre.Kapı-77"', "Şifre.Kapı-77"),  # noqa: RUF001
        (
            "AWS Secret Access Key [None]: D1W+h8cBq9tSt3DGLho+ylonitWa2EUXamN/Nl5s",
            "D1W+h8cBq9tSt3DGLho+ylonitWa2EUXamN/Nl5s",
        ),
        ("key1       FULL           " + "Ab3+" * 21 + "xY==  2025-03-11", "Ab3+" * 21 + "xY=="),
        # names run together, "pw", a digit after the word
        ("    public $smtppass = 'Aufschlag!2026';", "Aufschlag!2026"),
        (
            "Verschlüsselungskennwort: HyperBackup-Schlüssel-2024</Value>",
            "HyperBackup-Schlüssel-2024",
        ),
        ("GPG_PW='Copia-Segura_Ñandú26'", "Copia-Segura_Ñandú26"),
        (
            "password2 = 76OYmjKOUoqmGsGWUZwT4EML2J-64RkUS5EQ",
            "76OYmjKOUoqmGsGWUZwT4EML2J-64RkUS5EQ",
        ),
        # prose: a dotted password, Spanish, Japanese
        ("set passwd HelpD3sk.Rotterdam", "HelpD3sk.Rotterdam"),
        (
            "la clave del wifi de la oficina nueva es: Oficina_Calle.Mayor-12 (con",
            "Oficina_Calle.Mayor-12",
        ),
        ("ユーザー名：yamada.h\n初期パスワード：Yk7#pQ2m@Lz\n", "Yk7#pQ2m@Lz"),  # noqa: RUF001
        # upper-case names run together, compound key names, X_KEY / X_PAT with a random value
        ("PGPASSWORD='Tundra-Kettle-58' psql -h db", "Tundra-Kettle-58"),
        ("  azurestorageaccountkey: " + "oqdl" * 21 + "BA==", "oqdl" * 21 + "BA=="),
        ('PPLX_KEY = "Xb7FhuqOSqO6mTr2k97B37lYx"', "Xb7FhuqOSqO6mTr2k97B37lYx"),
        (
            "  FEED_PAT: 'arlu5npseqxkfl4kniuwhczpvn2qton3pb23r4d7b5pig36ckzf5'",
            "arlu5npseqxkfl4kniuwhczpvn2qton3pb23r4d7b5pig36ckzf5",
        ),
        # an AWS secret written after its key ID; a DSN password holding "#"; curl over lines
        (
            "AWSのアクセスキー AKIAXRP5JMQKCWDTC4GV とシークレット "
            "9GafXL6Ffkzd875aLaaZTm4QvZUPPeXFHv6Jvb3M を",
            "9GafXL6Ffkzd875aLaaZTm4QvZUPPeXFHv6Jvb3M",
        ),
        ("mysql+pymysql://report:R3p0rt$ing#@mysql-legacy.example.com:3306/crm", "R3p0rt$ing#"),
        (
            "curl -X POST https://api.example.com/x \\\n"
            "  -u AC3f9d27b1e04c58a6:ec04db67ea613db02db6",
            "ec04db67ea613db02db6",
        ),
        # a WordPress salt with "Now(" in it is no call
        (
            "define( 'AUTH_KEY', 'dGimSb>(Ao<l#J#m{FM}Now(;mc&vOa,cA^q' );",
            "dGimSb>(Ao<l#J#m{FM}Now(;mc&vOa,cA^q",
        ),
    ],
)
def test_a_credential_in_a_developer_form_is_masked_value_only(
    text: str, value: str | None
) -> None:
    if value is None:  # an option whose value is the token itself
        value = "KoMqjjNgVt7YR03zSipw-cqEx"
    assert value in values(text), found(text)
    assert all(v == value or v in text for v in values(text))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("dckr_pat_otniOMzafgczsbkVrrkNUZdcb2", "DOCKER_HUB_TOKEN"),
        ("PMAK-555de8aa8fddfbb0f1496355-3cc27afdb574233762abd30d500597f437", "POSTMAN_API_KEY"),
        ("NRAK-IGK774YP52G5NCTOPBQ562R5AEM", "NEW_RELIC_KEY"),
        ("dop_v1_" + "a1b2c3d4" * 8, "DIGITALOCEAN_TOKEN"),
        ("shpat_" + "0123456789abcdef" * 2, "SHOPIFY_TOKEN"),
        ("hvs.CAESIJ" + "kq3L9xWv4Tb8Ns1Rj6Hc3Yp5", "VAULT_TOKEN"),
        ("glsa_" + "Zq7Kd2Lm9xWv4Tb8Ns1Rj6Hc3Yp5Fg0A" + "_1a2b3c4d", "GRAFANA_TOKEN"),
        ("dapi" + "0123456789abcdef" * 2, "DATABRICKS_TOKEN"),
        ("lin_api_" + "Zq7Kd2Lm9xWv4Tb8Ns1Rj6Hc3Yp5Fg0AbCdEfGhi", "LINEAR_API_KEY"),
        ("key-" + "0123456789abcdef" * 2, "MAILGUN_KEY"),
        ("sntryu_" + "3822c9aa6d4d687cbbc8fee5ed26da6d", "SENTRY_TOKEN"),
        ("sk.eyJ1IjoiZXhhbXBsZSIsImEiOiJjbGZ4In0.k51GRBYkjAcwKJfOqQ5wDD", "MAPBOX_TOKEN"),
        ("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", "GOOGLE_OAUTH_SECRET"),
        ("rubygems_" + "0123456789abcdef" * 3, "RUBYGEMS_KEY"),
        (
            "https://discord.com/api/webhooks/1518595934635607022/"
            "5TbAq1jBKRg_qnJ31XpXFQAO-urZloG0mq2c9yub9WR2t2x_a_fm9Sz1x-B9kIDqXMHv",
            "DISCORD_WEBHOOK",
        ),
        ("sbp_" + "0123456789abcdef" * 2 + "01234567", "SUPABASE_TOKEN"),
        ("https://hooks.zapier.com/hooks/catch/14820397/3kq9vzt/", "ZAPIER_WEBHOOK"),
    ],
)
def test_developer_platform_tokens_are_found_whole(value: str, kind: str) -> None:
    assert found(f'echo "{value}" | docker login --password-stdin') == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "docker login --password-stdin < token.txt",
        "mysql -u root -p mydb",  # -p alone: mysql asks for it
        "redis-cli --pass $REDIS_PASSWORD ping",
        "curl -u $USER:$TOKEN https://x.example",
        "REDIS_URL=redis://:%REDIS_PASSWORD%@cache:6379/0",
        "DATABASE_URL=postgres://admin:changeme@localhost/app",
        "DATABASE_URL=postgres://app:${DB_PASSWORD}@db:5432/app",
        "http://localhost:8080@evil.example/",  # a port, not a password
        "REDIS_URL: redis://:${REDIS_PASSWORD:?set}@redis:6379",
        '{"key": "apiKey", "value": "{{api_key}}"}',
        "- name: LOG_LEVEL\n  value: debug",
        '("password", password_from_vault)',
        'conn = f"Driver=x;Pwd={pwd};"',
        "the password for the account is 12 characters long",
        "--max-tokens 512 --temperature 0.2",
        # a public Mapbox token, a TOML inline table, a shell's PWD, a relay-looking listing
        "pk.eyJ1IjoiZXhhbXBsZSIsImEiOiJjbGZ4In0.k51GRBYkjAcwKJfOqQ5wDD",
        'password = { from_env = "DB_PASSWORD" }',
        "PWD=/home/ann/project",
        "main.py:42:E501 line too long\nREADME.md  note:draft",
        # names, not values: a dictionary key's string, a setting's key
        'storage_key = "cond_frame_outputs" if x else "non_cond_frame_outputs"',
        '<add key="Username" value="az" />\n"region": {"value": "eu-west-1"}',
        "'password' => $password,",
        # hashes after a type digit, prose "key", an N-token window, names that hold "pass"
        "enable secret 9 $9$PscBv7O4GuJSfh$iILeySkenroRCLwlN/81nc",
        "the secret sauce is the key 2 success",
        "outside the target's {window}-token window",
        "bypass = 'all'\ncompass = 'north1'\nsurpass: 'limit9'",
        "<PlainText>true</PlainText>\n<password>${DB_PASS}</password>",
        "<key>CFBundleName</key>\n<string>Demo App 2</string>",
        "password = get_secret('db')",
        "AWS Secret Access Key [****************3xYz]: ",
        # sudoers' NOPASSWD, keys that name things, public keys and key IDs
        "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart *",
        'TOOL_MESSAGE_V2_CONTENT_KEY = "_tool_message_v2_content"',
        'SORT_KEY = "createdAt"\nPUBLIC_KEY = "MCowBQYDK2VwAyEA9x8Kq2Lm3"\n'
        'GPG_KEY = "0x4AEE18F83AFDEB23"',
    ],
)
def test_references_templates_and_look_alikes_in_these_forms_are_not_secrets(text: str) -> None:
    """(detect-secrets' own basic-auth pattern, kept as it is, still masks `admin:changeme@`
    and `localhost:8080@`: what is checked is that nothing else does.)"""
    assert [f for f in found(text) if f[0] != "BASIC_AUTH_CREDENTIALS"] == []


@pytest.mark.parametrize(
    "text",
    [
        "redis-server --requirepass 'kst-Redis-88qLw2' now",
        "curl --user 'deploy:W!ndmill-Deploy-9' https://x",
        "url redis://:k$t-Redis!88@redis:6379 ok",
        '{"key": "adminPassword", "value": "Harrow-Stg-0091!"} ok',
        "  - name: DB_PASSWORD\n    value: 'Pa$$-w0rd!x' ok",
        "host:5432:*:readonly:r3ad!only-Quill-55\nnext",
        "Pwd={Fx9;Etl!nightly};Encrypt=yes",
        "jdbc:oracle:thin:compta/Compta!Nantes44@db ok",
        "&sig=HRHDCm2tajT%2FbukSEmInD097eJ%2Fkh1Kc%2B ok",
        "[smtp.example.com]:587    relay@example.de:Rel@y-Lind!0365\nnext",
        '"adminPassword": { "value": "Az-St@tic!Portal9" } ok',
        '<add key="ClearTextPassword" value="u6vc!jdvag32zjd7" /> ok',
        "ldapsearch -x -D 'CN=svc' -w 'J1ra§Sync-2026' -b 'OU=U'",
        "<Password>\n  <Value>Kiosk#Lobby 7</Value> ok",
        "username x password 0 Tejo#Ponte 25 ok",
        '-password "skål!og-smør" -public 1',
        '#define WIFI_PASSWORD "Şifre Kapı-77" ok',  # noqa: RUF001
    ],
)
def test_a_form_being_streamed_is_held_from_where_it_begins(text: str) -> None:
    """At every split inside the value the detector holds back at least to the value's start
    (these values hold characters no token holds, so the trailing run alone would leak)."""
    [finding] = SecretsDetector().find(text)
    for cut in range(finding.start, finding.end):
        held = SecretsDetector().holdback(text[:cut])
        assert held >= cut - finding.start, text[:cut]
    assert open_form_start(text) is None or open_form_start(text) < finding.start


def test_only_random_base64_after_an_aws_key_id_is_its_secret() -> None:
    """A commit's SHA-1 or a 40-letter word after a key ID is no secret; the key ID itself is
    the AWS plugin's finding either way."""
    for after in ("commit 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c", "see " + "a" * 40):
        kinds = [kind for kind, _ in found(f"AKIAIOSFODNN7EXAMPLE {after}")]
        assert kinds == ["AWS_ACCESS_KEY"], after


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("WIFI:T:WPA;S:Hallgren Guest;P:Kanelbulle!2026;H:false;;", "Kanelbulle!2026"),
        ("WIFI:S:Cafe;T:WPA;P:semi\\;colon-9;;", "semi\\;colon-9"),
        (
            "    Security key           : Present\n    Key Content            : bla sylt 1966\n",
            "bla sylt 1966",
        ),
        (
            ">>> from django.conf import settings\n>>> settings.SECRET_KEY\n"
            "'t&kednq^)nwtx^lp(7y)#e33b(94vmi)52v%515-s7aha%l!n6'\n>>> settings.DEBUG\nFalse",
            "t&kednq^)nwtx^lp(7y)#e33b(94vmi)52v%515-s7aha%l!n6",
        ),
        ("In [3]: os.environ['DB_PASSWORD']\nOut[3]: 'Pg-Local#2026'", "Pg-Local#2026"),
        ("# rclone.conf\n[b2-archive]\ntype = b2\nkey"
            " = XWZBvxaBUvU6OK7moEIvVJZw9jTdWFwY\n", "XWZBvxaBUvU6OK7moEIvVJZw9jTdWFwY"),
        (
            '  -H "Authorization: Splunk 66a6e67a-1a86-4068-bb84-7d5b6b63bea1" \\',
            "66a6e67a-1a86-4068-bb84-7d5b6b63bea1",
        ),
        (
            "Authorization: Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
            "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",
        ),
    ],
)  # fmt: skip
def test_more_records_whose_name_stands_apart_are_found_value_only(text: str, value: str) -> None:
    assert [v for _, v in found(text)] == [value]


@pytest.mark.parametrize(
    "text",
    [
        "    Security key           : Present\n    Key Content            : Absent",
        "In [9]: pwd\nOut[9]: '/home/jd/py4science/book'",  # IPython's working directory
        ">>> settings.DEBUG\n'False-ish-value'",
        # `key = X` in a Python class is a name; under no INI section it is not read
        "class Scheme:\n    key = kFp8StaticTensorSym\n",
        "[cache]\nkey = user_profile_cache_v2\n",  # words, not a random key
        "Authorization: Token <your-token-here>",
        "Authorization: Token ${API_TOKEN}",
    ],
)
def test_look_alikes_of_those_records_are_left_alone(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        # Oracle's command-line logins: the password between "/" and "@"
        ('sqlplus hr_app/"Sol#Lune-2027"@//203.0.113.70:1521/HRPDB1', "Sol#Lune-2027"),
        ("expdp system/Manag3r_01@orcl directory=DP_DIR dumpfile=x.dmp", "Manag3r_01"),
        ("sqlldr userid=loader/L0ad#er22@pdb1 control=x.ctl", "L0ad#er22"),
        # keytool and jarsigner take store and key passwords as one-dash options
        (
            "keytool -list -v -keystore upload.jks -storepass 'pr0ton-Marigold-77'",
            "pr0ton-Marigold-77",
        ),
        ("jarsigner -keystore k.jks -keypass Kp-2026-xyz app.apk upload", "Kp-2026-xyz"),
    ],
)
def test_oracle_logins_and_keystore_passwords_are_found_value_only(text: str, value: str) -> None:
    assert found(text) == [("PASSWORD", value)]


@pytest.mark.parametrize(
    "text",
    [
        "sqlplus / as sysdba",
        "sqlplus hr_app/$HR_PASSWORD@//db:1521/HRPDB1",
        "keytool -list -keystore upload.jks -storepass:env STOREPASS",
    ],
)
def test_oracle_and_keytool_references_are_no_secrets(text: str) -> None:
    assert found(text) == []


LOGINS = [
    ("docker login -u bob -p 'Reg!stry-Pw-31' registry.example.com", "Reg!stry-Pw-31"),
    ("podman login quay.io -u ci -p Qu4y#Robot-88", "Qu4y#Robot-88"),
    ("helm registry login ghcr.io -u bob -p Hm-R3g!2026", "Hm-R3g!2026"),
    ("oc login -u developer -p Dev3lop!2024 https://api.crc.testing:6443", "Dev3lop!2024"),
    ("az login -u ann@contoso.example -p Qz7!kLm29xW", "Qz7!kLm29xW"),
    ('mongosh "mongodb://db:27017" -u admin -p Mg0Adm1n!x --quiet', "Mg0Adm1n!x"),
    ('sqlcmd -S sql01 -U sa -P "Sq1Srv#Adm" -Q "SELECT 1"', "Sq1Srv#Adm"),
    ("pihole -a -p Tr0ub4dor-Horse9", "Tr0ub4dor-Horse9"),
    ("echo 'Pipe!d-Pw-77' | docker login -u bob --password-stdin reg.example", "Pipe!d-Pw-77"),
    ('printf "%s" "Pr1ntf#Pw" | helm registry login ghcr.io --password-stdin', "Pr1ntf#Pw"),
]


@pytest.mark.parametrize(("text", "value"), LOGINS)
def test_registry_cluster_and_database_logins_are_found_value_only(text: str, value: str) -> None:
    """A random password in each was left whole before (docker login -p: 0 of 300 simulated)."""
    assert found(text) == [("PASSWORD", value)]


@pytest.mark.parametrize(("text", "value"), LOGINS)
def test_those_logins_being_streamed_are_held_from_where_they_begin(text: str, value: str) -> None:
    start = text.index(value)
    for cut in range(start, start + len(value)):
        assert SecretsDetector().holdback(text[:cut]) >= cut - start, text[:cut]


@pytest.mark.parametrize(
    "text",
    [
        "docker run -p 8080:80 nginx",  # a port
        "docker login registry.example.com",
        "ssh -p 2222 ann@bastion",
        "psql -h db -p 5432 -U app",
        "echo $CI_REGISTRY_PASSWORD | docker login -u $CI_REGISTRY_USER --password-stdin",
        'docker login -u bob -p "$DOCKER_PASSWORD"',
        "mongodump -u backup -p $MONGO_PW --db shop",
        "az login --service-principal -u $APP_ID -p $CERT_PATH --tenant $TENANT",
        "echo hello world | wc -w",
    ],
)
def test_ports_references_and_plain_echoes_are_no_logins(text: str) -> None:
    assert found(text) == []
